"""Run an unmodified script with scikit-learn patched by gradkit.

    python -m gradkit.patch [--names a,b,...] [--debug] script.py [args ...]
    python -m gradkit.patch [--names a,b,...] [--debug] -m module [args ...]

The script (or module) runs as __main__ with sys.argv = [script, *args], as
`python script.py args` would run it, after gradkit.patch_sklearn(names).
--debug logs, on stderr, which calls gradkit accelerated and which fell back.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys

_USAGE = (
    "usage: python -m gradkit.patch [--names a,b,...] [--debug] "
    "(script.py | -m module) [args ...]"
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names: list[str] | None = None
    debug = False
    while argv and argv[0].startswith("--"):
        option = argv.pop(0)
        if option == "--":
            break
        if option in ("-h", "--help"):
            print(__doc__)
            return 0
        if option == "--debug":
            debug = True
        elif option == "--names" and argv:
            names = [n for n in argv.pop(0).split(",") if n]
        elif option.startswith("--names="):
            names = [n for n in option.split("=", 1)[1].split(",") if n]
        else:
            print(f"{_USAGE}\nunknown option {option!r}", file=sys.stderr)
            return 2
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    as_module = argv[:1] == ["-m"]
    if as_module:
        argv.pop(0)
    if not argv:
        print(_USAGE, file=sys.stderr)
        return 2

    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        patch_logger = logging.getLogger("gradkit.patch")
        patch_logger.addHandler(handler)
        patch_logger.setLevel(logging.DEBUG)

    from gradkit._patch import patch_sklearn

    patch_sklearn(names)
    target = argv[0]
    sys.argv = argv
    if as_module:
        sys.path.insert(0, os.getcwd())
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        runpy.run_path(target, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
