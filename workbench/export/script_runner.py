"""Run a Python script as `python SCRIPT ARGS...` would, then leave without tearing down the interpreter.

    python script_runner.py SCRIPT [ARGS...]

llama.cpp's converters import torch and transformers; finalizing those modules at exit takes about a second here,
an eighth of a small model's whole conversion. The script's output files are closed by the script itself, so
skipping the teardown loses nothing. Errors (an exception, a non-zero sys.exit) exit the usual way, with the
usual traceback. Run by path, not with -m: it imports nothing of workbench's.
"""

import os
import runpy
import sys


def main() -> None:
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` sets it
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
