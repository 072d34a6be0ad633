"""Child processes (llama.cpp's converter, the local judge server, the dashboard's Streamlit) die with wb.

A child started through workbench/system/script_runner.py with guarded_env() watches the pid that started it
and exits when that process is gone: killed with SIGKILL, SIGTERM or a lost terminal, wb runs no cleanup, and a
child re-parented to PID 1 would keep writing files or serving the store. (PR_SET_PDEATHSIG would fire when
the *thread* that started the child ends, and the judge server is started from a worker thread.)
"""

import os
import sys
from pathlib import Path

PARENT_ENV = "WB_PARENT_PID"
RUNNER = Path(__file__).with_name("script_runner.py")


def module_command(module: str, *args: str) -> list[str]:
    """`python -m MODULE ARGS` through the runner that watches its parent (start it with guarded_env())."""
    return [sys.executable, str(RUNNER), "-m", module, *args]


def guarded_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) plus the pid the child must outlive no longer than."""
    return {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}
