"""llama.cpp's own Python tools (convert_hf_to_gguf.py and the gguf-py of the same commit), found or fetched.

The converter must come from the llama.cpp commit that llama-cpp-python was built from: a GGUF written by a
newer or older converter can carry keys or tensor layouts the runtime does not understand. The matching source
ships inside the llama-cpp-python sdist (vendor/llama.cpp), so that is where the tools come from.

Order: $WB_LLAMA_CPP_DIR (a llama.cpp checkout); $WB_HOME/llama.cpp/<version>/ if already extracted; else
extracted from the sdist at $WB_LLAMA_CPP_SDIST, or from one downloaded from PyPI with pip.
"""

import ast
import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from workbench.errors import BadInput, EnvironmentProblem
from workbench.store.files import staged_folder
from workbench.system.children import RUNNER  # the scripts, minus a second of exit
from workbench.system.failures import is_disk_full, says_disk_full
from workbench.system.home import home

FALLBACK_VERSION = "0.3.36"
DISTRIBUTION = "llama-cpp-python"
VENDOR_PREFIX = "vendor/llama.cpp/"
# What the scripts import or read from their tree: the gguf package, the per-architecture conversion
# modules (newer llama.cpp split them out of convert_hf_to_gguf.py) and the chat templates some use.
TREE_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE")
TREE_DIRS = ("gguf-py/", "conversion/", "models/templates/")
SOURCE_RECORD = "wb_source.json"


@dataclass(frozen=True)
class LlamaTools:
    root: Path  # a folder laid out like a llama.cpp checkout (at least TREE_FILES and TREE_DIRS)
    version: str  # the llama-cpp-python version the tools match, or "checkout" for WB_LLAMA_CPP_DIR
    origin: str  # where they came from, for lineage records

    @property
    def convert_hf(self) -> Path:
        return self.root / "convert_hf_to_gguf.py"

    @property
    def convert_lora(self) -> Path:
        return self.root / "convert_lora_to_gguf.py"

    def env(self) -> dict[str, str]:
        """Environment for the scripts: their own gguf-py first on the path, never PyPI's gguf."""
        env = dict(os.environ)
        env.pop("NO_LOCAL_GGUF", None)
        paths = [str(self.root / "gguf-py")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return env

    def supported_architectures(self) -> set[str] | None:
        """Architectures convert_hf_to_gguf.py knows, read from its source; None when the layout is unknown."""
        init = self.root / "conversion" / "__init__.py"
        if not init.exists():
            return None
        try:
            tree = ast.parse(init.read_text(encoding="utf-8"))
        except SyntaxError:
            return None
        for node in tree.body:
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and isinstance(node.value, ast.Dict):
                return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        return None

    def convert(self, model_dir: Path, outfile: Path, outtype: str, log_path: Path) -> None:
        """Run convert_hf_to_gguf.py in a subprocess; its output goes to log_path."""
        cmd = [sys.executable, str(RUNNER), str(self.convert_hf), str(model_dir), "--outtype", outtype,
               "--outfile", str(outfile)]
        run_logged(cmd, self.env(), log_path, what=f"llama.cpp's converter on {model_dir}")


    def convert_adapter(self, adapter_dir: Path, base_dir: Path, outfile: Path, outtype: str, log_path: Path) -> None:
        """Run convert_lora_to_gguf.py on a PEFT LoRA adapter (the base folder supplies config and vocabulary)."""
        cmd = [sys.executable, str(RUNNER), str(self.convert_lora), "--base", str(base_dir),
               "--outtype", outtype, "--outfile", str(outfile), str(adapter_dir)]
        run_logged(cmd, self.env(), log_path, what=f"llama.cpp's LoRA converter on {adapter_dir}")


STALL_S = 600.0  # the converters print a line per tensor: this long without a byte of output is a hang
TAIL_BYTES = 64 << 10


def run_logged(cmd: list[str], env: dict[str, str], log_path: Path, *, what: str, stall_s: float = STALL_S) -> None:
    """Run a tool with its output in a log file; raise a one-line error quoting its last error line.

    The output passes through this process, its tail kept in memory: the log may sit on the very disk the tool
    fills. A tool that fails on a full disk raises OSError(ENOSPC), which the caller's
    workbench.system.failures.disk_full_as reports naming its output (wb export's -o); a tool that prints nothing
    for stall_s seconds is stopped, exit 4."""
    from workbench.system.children import guarded_env
    from workbench.system.faultpoints import pause_point

    pump = _OutputPump(log_path)
    proc = subprocess.Popen(cmd, env=guarded_env({**env, "PYTHONUNBUFFERED": "1"}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reader = threading.Thread(target=pump.run, args=(proc.stdout,), name="wb-tool-output", daemon=True)
    reader.start()
    try:
        pause_point("tool-running")
        code = _wait(proc, pump, stall_s)
    except BaseException:  # Ctrl-C: don't leave the child writing into a folder we are about to delete
        proc.kill()
        proc.wait()
        raise
    finally:
        reader.join(timeout=10)
        pump.close()
    if code == 0:
        return
    lines = pump.tail.decode("utf-8", errors="replace").splitlines()
    if pump.disk_full or says_disk_full("\n".join(lines)):
        raise OSError(errno.ENOSPC, f"{what} ran out of disk space")
    if code is None:
        error, reason = EnvironmentProblem, f"printed nothing for {stall_s:.0f} s and was stopped"
    else:
        reason = _last_error_line(lines) or f"exit status {code}"
        error = EnvironmentProblem if ("ModuleNotFoundError" in reason or "ImportError" in reason) else BadInput
    # log_path usually sits in a build folder that is deleted on failure: keep a copy for the user, under
    # WB_HOME; a verb that records a run moves it into the run's folder (see ToolLog)
    kept_dir = kept_logs_dir()
    kept_dir.mkdir(parents=True, exist_ok=True)
    fd, kept = tempfile.mkstemp(prefix=f"wb-{log_path.stem}-", suffix=".log", dir=kept_dir)
    os.close(fd)
    shutil.copyfile(log_path, kept)
    exc = error(f"{what} failed: {reason} (full log: {kept})")
    exc.log_file = Path(kept)
    raise exc


def _wait(proc: subprocess.Popen, pump: "_OutputPump", stall_s: float) -> int | None:
    """The tool's exit status, or None when it went silent for stall_s seconds (then it is killed)."""
    while True:
        try:
            return proc.wait(timeout=min(1.0, stall_s))
        except subprocess.TimeoutExpired:
            if time.monotonic() - pump.last_output > stall_s:
                proc.kill()
                proc.wait()
                return None


class _OutputPump:
    """Copies a child's output into its log file, keeping the last TAIL_BYTES and the time of the last byte.
    Writing the log stops at the first error: a full disk is recorded (the child's own report of it may be lost
    with it)."""

    def __init__(self, log_path: Path):
        self.log = open(log_path, "wb", buffering=0)  # noqa: SIM115  (unbuffered: close() has nothing to flush)
        self.tail = b""
        self.last_output = time.monotonic()
        self.disk_full = False
        self.writing = True

    def run(self, stream) -> None:
        while chunk := stream.read1(1 << 16):
            self.last_output = time.monotonic()
            self.tail = (self.tail + chunk)[-TAIL_BYTES:]
            if self.writing:
                try:
                    self.log.write(chunk)
                except OSError as exc:
                    self.writing, self.disk_full = False, is_disk_full(exc)
        stream.close()

    def close(self) -> None:
        self.log.close()


def kept_logs_dir() -> Path:
    return home() / "logs"


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        stripped = line.strip()
        if stripped.startswith("ERROR:") or (stripped and ("Error" in stripped.split(":")[0])):
            return stripped
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")


def installed_version() -> str:
    """The llama-cpp-python version whose tools to use (without loading its shared library). A local build label
    (set-up's `+wb.portable.<key>`) names the flags the runtime was built with, not other sources: the sdist and
    its converter are the public version's."""
    try:
        return metadata.version(DISTRIBUTION).split("+")[0]
    except metadata.PackageNotFoundError:
        return FALLBACK_VERSION


def locate_tools() -> LlamaTools:
    checkout = os.environ.get("WB_LLAMA_CPP_DIR")
    if checkout:
        root = Path(checkout).expanduser()
        missing = [p for p in ("convert_hf_to_gguf.py", "gguf-py") if not (root / p).exists()]
        if missing:
            raise EnvironmentProblem(f"WB_LLAMA_CPP_DIR={checkout}: not a llama.cpp checkout (no {missing[0]})")
        return LlamaTools(root=root.resolve(), version="checkout", origin=str(root.resolve()))

    version = installed_version()
    cache = home() / "llama.cpp" / version
    if not (cache / "convert_hf_to_gguf.py").exists():
        sdist = os.environ.get("WB_LLAMA_CPP_SDIST")
        if sdist:
            extract_tools(Path(sdist).expanduser(), cache, version)
        else:
            extract_tools(cached_sdist(version), cache, version)
    origin = _read_origin(cache)
    return LlamaTools(root=cache, version=version, origin=origin)


def _read_origin(cache: Path) -> str:
    try:
        return json.loads((cache / SOURCE_RECORD).read_text())["sdist"]
    except (OSError, ValueError, KeyError):
        return str(cache)


def sdist_cache() -> Path:
    """Shared by every WB_HOME on the machine: scripts/setup.sh puts the sdist it builds llama.cpp from here."""
    return Path(os.environ.get("WB_SDIST_CACHE") or Path.home() / ".cache" / "ckpt-workbench" / "sdists")


def cached_sdist(version: str) -> Path:
    found = sorted(sdist_cache().glob(f"llama_cpp_python-{version}.tar.gz"))
    if found:
        return found[0]
    sdist_cache().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=sdist_cache()) as tmp:
        downloaded = download_sdist(version, Path(tmp))
        final = sdist_cache() / downloaded.name
        os.replace(downloaded, final)
    return final


def download_sdist(version: str, dest: Path) -> Path:
    from rich.console import Console

    Console(stderr=True).print(
        f"downloading the {DISTRIBUTION} {version} sdist for llama.cpp's converter (about 76 MB, once)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"{DISTRIBUTION}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
        raise EnvironmentProblem(
            f"could not download the {DISTRIBUTION} {version} sdist for llama.cpp's converter ({last}); "
            f"set WB_LLAMA_CPP_SDIST to a downloaded sdist or WB_LLAMA_CPP_DIR to a llama.cpp checkout")
    return found[0]


def extract_tools(sdist: Path, target: Path, version: str) -> None:
    """Extract only the converter tree from the sdist into target, atomically (temp folder, then rename)."""
    if not sdist.is_file():
        raise EnvironmentProblem(f"WB_LLAMA_CPP_SDIST={sdist}: no such file")
    with staged_folder(target, keep_existing=True) as tmp:  # another process may extract the same tools at once
        try:
            with tarfile.open(sdist, "r:*") as tar:
                members = _tool_members(tar, sdist, version)
                for member, rel in members:
                    member.name = rel
                    tar.extract(member, tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise EnvironmentProblem(f"{sdist}: not a readable {DISTRIBUTION} sdist ({exc})") from None
        (tmp / SOURCE_RECORD).write_text(json.dumps({"sdist": sdist.name, "version": version}) + "\n")


def _tool_members(tar: tarfile.TarFile, sdist: Path, version: str) -> list[tuple[tarfile.TarInfo, str]]:
    members = []
    top_dirs = set()
    for member in tar.getmembers():
        top, _, rest = member.name.partition("/")
        top_dirs.add(top)
        if not rest.startswith(VENDOR_PREFIX) or not member.isfile():
            continue
        rel = rest[len(VENDOR_PREFIX):]
        if rel in TREE_FILES or rel.startswith(TREE_DIRS):
            members.append((member, rel))
    expected_top = f"llama_cpp_python-{version}"
    if expected_top not in top_dirs:
        found = ", ".join(sorted(t for t in top_dirs if t.startswith("llama_cpp_python-"))) or "no llama_cpp_python-*"
        raise EnvironmentProblem(
            f"{sdist}: holds {found}, but {DISTRIBUTION} {version} is installed; the converter must match it")
    if not any(rel == "convert_hf_to_gguf.py" for _, rel in members):
        raise EnvironmentProblem(f"{sdist}: no vendor/llama.cpp/convert_hf_to_gguf.py inside")
    return members
