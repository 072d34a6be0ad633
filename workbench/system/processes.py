"""Is a process that wrote something (a run, a staging folder) still alive? Used to tell a killed run from a
running one and a dead process's leftovers from another process's work in progress."""

import os


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name before ')' may hold spaces


def alive(pid: int, started: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    if _zombie(pid):  # killed, not yet reaped by its parent
        return False
    if started is not None:
        now = start_time(pid)
        return now is None or now == started
    return True


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().decode(errors="replace").rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return False


def identity() -> dict:
    """What a record keeps to be checked with alive() later."""
    import socket

    return {"pid": os.getpid(), "pid_started": start_time(os.getpid()), "host": socket.gethostname()}


def is_dead(owner: dict | None) -> bool:
    """True only when `owner` (from identity()) was a process on this host that has ended."""
    import socket

    if not owner or not owner.get("pid") or owner.get("host") != socket.gethostname():
        return False
    return not alive(int(owner["pid"]), owner.get("pid_started"))
