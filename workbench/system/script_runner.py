"""Run a Python script as `python SCRIPT ARGS...` (or a module as `python -m MODULE ARGS...`) would, then leave
without tearing down the interpreter; and die with the process that started it.

    python script_runner.py SCRIPT [ARGS...]
    python script_runner.py -m MODULE [ARGS...]

llama.cpp's converters import torch and transformers; finalizing those modules at exit takes about a second here,
an eighth of a small model's whole conversion. The script's output files are closed by the script itself, so
skipping the teardown loses nothing. Errors (an exception, a non-zero sys.exit) exit the usual way, with the
usual traceback.

With WB_PARENT_PID set (workbench.system.children.guarded_env), a daemon thread exits this process as soon as that
parent is gone (a kill -9 of wb runs none of wb's cleanup). Run by path, not with -m: it imports nothing of
workbench's, so the script sees the same sys.path it would see on its own.
"""

import os
import runpy
import sys
import threading
import time

PARENT_ENV = "WB_PARENT_PID"  # workbench.system.children.PARENT_ENV
POLL_S = 0.2


def watch_parent() -> None:
    value = os.environ.pop(PARENT_ENV, "")  # not inherited further: the script's own children have this parent
    if not value.isdigit():
        return
    parent = int(value)
    if os.getppid() != parent:  # gone before we got here
        os._exit(143)

    def watch() -> None:
        while True:
            time.sleep(POLL_S)
            if os.getppid() != parent:  # re-parented: the process that started us has ended
                os._exit(143)

    threading.Thread(target=watch, name="wb-parent-watch", daemon=True).start()


def main() -> None:
    watch_parent()
    if sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        script = sys.argv[1]
        sys.argv = sys.argv[1:]
        sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` sets it
        run = lambda: runpy.run_path(script, run_name="__main__")  # noqa: E731
    try:
        run()
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
