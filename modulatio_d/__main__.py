from modulatio_d.cli.main import main

raise SystemExit(main())
