"""`modulatio serve`: the HTTP control plane and the dashboard, beside the CLI.

A separate process (the worker daemons never import this package or its libraries):
Starlette routes (api.py) over the same use-cases the CLI calls (ops/, store/), so a
request changes files exactly as the command would and every daemon and host sees it.
auth.py checks the bearer token and the body size; stream.py follows events.jsonl and a
step's log; openapi.py describes the routes from the same table the app is built from;
dashboard/ is the page at `/` (no build step, no CDN).
"""
