"""llama-cpp-python itself, as every llama.cpp module here reaches it: the import, the threads it runs on, and its
log captured instead of printed."""

import contextlib
import ctypes
import os

from workbench.system.extras import require


def llama_cpp(purpose: str):
    """The llama_cpp module, or MissingExtra naming the `gguf` extra."""
    return require("llama_cpp", purpose, "gguf")


def cpu_threads() -> int:
    """llama.cpp's threads: OMP_NUM_THREADS where it is set (the same limit torch keeps; Ray sets it to a task's
    num_cpus), else the cores this process may run on. ggml's threads wait for each other at every step: two
    processes of 2 threads each on 2 cores decode slower than with 1 thread each (bench/bench_threads.py)."""
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        return int(limit)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def captured_llama_log():
    """Collect llama.cpp's log lines (instead of printing them) for the duration; yields the list of lines."""
    lib = llama_cpp("Capturing llama.cpp's log")
    from llama_cpp import _logger

    chunks: list[str] = []

    @lib.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        chunks.append(text.decode("utf-8", errors="replace"))

    lines: list[str] = []
    lib.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        lib.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        lines.extend("".join(chunks).splitlines())
