"""Named points where a test can stop a real `wb` process to kill or interrupt it there.

    WB_PAUSE_AT=export-verify WB_PAUSE_MARKER=/tmp/x wb export ...

At the named point the process writes its pid to the marker file and waits (in the main thread, so a Ctrl-C
lands there as it would in real work) until a signal ends it. Unset, a point costs one dictionary lookup.
"""

import os
import time


def pause_point(name: str) -> None:
    if os.environ.get("WB_PAUSE_AT") != name:
        return
    marker = os.environ.get("WB_PAUSE_MARKER")
    if marker:
        tmp = f"{marker}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(tmp, marker)
    while True:
        time.sleep(0.05)
