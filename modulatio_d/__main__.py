from modulatio_d.cli import main

raise SystemExit(main())
