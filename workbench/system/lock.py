"""The lock: constraints.txt pins every Python dependency to the versions of one resolve, which set-up installs
and CI tests. Here: read it, and compare what is installed against it."""

import importlib.metadata
import re
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[_normalize(m.group(1))] = m.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    """What is installed in this environment's site-packages. Not every distribution importlib can see: once
    setuptools is imported it puts its vendored copies (packaging, more-itertools, ...) on sys.path."""
    import sysconfig

    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and Path(str(dist.locate_file(""))).resolve() in site:
            out.setdefault(_normalize(name), dist.version)
    return out


def drift(pins: dict[str, str], installed: dict[str, str]) -> list[tuple[str, str, str | None]]:
    """(package, locked, installed or None) for each pin the environment does not match. A local version label
    (llama-cpp-python's `+wb.portable.<key>`) matches its public version, as pip's `==` does."""
    out = []
    for name, locked in sorted(pins.items()):
        have = installed.get(name)
        if have is None or have.split("+")[0] != locked.split("+")[0]:
            out.append((name, locked, have))
    return out
