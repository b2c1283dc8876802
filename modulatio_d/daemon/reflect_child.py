"""The child side of `plugin:NAME` reflectors (run as `python -m`, see reflect.py).

argv[1] is the entry point's `module:function`; the attempt comes as JSON on
stdin; the function's answer goes to stdout as one JSON line. An exception is
the reflector's failure (traceback on stderr, exit 1): the default decides.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(target: str) -> int:
    module_name, _, attr = target.partition(":")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    answer = fn(json.load(sys.stdin))
    print(json.dumps(answer, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
