"""The browser tests' shared parts: Debian's system Chromium for Playwright (never `playwright install`), and
`wb dashboard` served on a free loopback port for the length of a test."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def sync_playwright():
    """Playwright's sync API; chromium is here (the tests are skipped otherwise), so a missing package fails."""
    try:
        from playwright import sync_api
    except ImportError:  # chromium is here, so this is a broken setup, not a reason to skip
        pytest.fail("chromium is installed but the playwright package is not: pip install playwright")
    return sync_api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_dashboard(store_root: Path, log_path: Path):
    """`wb dashboard --store STORE` on a free port until the block ends; yields its base URL."""
    port = free_port()
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "dashboard", "--store", str(store_root), "--port",
                             str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    pytest.fail(f"dashboard did not come up:\n{log.read()}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
