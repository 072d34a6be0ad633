"""Checkpoint: what a path on disk is (adapter, merged model, quantized file), where it came from, and its hash.

Metadata is saved beside the weights (`wb_checkpoint.json` in a folder, `<file>.wb.json` beside a file),
so lineage travels with the checkpoint.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.home import home
from workbench.store.files import write_json_atomic

META_NAME = "wb_checkpoint.json"
DEFAULT_REF = "default"

KINDS = ("base", "adapter", "merged", "quantized")
FORMATS = ("hf", "peft", "gguf", "awq", "gptq", "exl2")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
SHA_CACHE_MIN_BYTES = 32 * 2**20


@dataclass
class Checkpoint:
    path: Path
    name: str
    kind: str
    format: str
    base: str | None = None  # reference to the base checkpoint ("default" or a path) for adapters
    sha: str = ""
    parent: dict | None = None  # lineage: what this was made from, and how
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @property
    def meta_path(self) -> Path:
        return self.path / META_NAME if self.path.is_dir() else self.path.with_name(self.path.name + ".wb.json")

    def save_meta(self) -> None:
        meta = self.to_dict()
        meta.pop("path")
        write_json_atomic(self.meta_path, meta)


def weights_sha(path: Path) -> str:
    """sha256 over the weight files (names and bytes), independent of metadata files.

    Large checkpoints' hashes are remembered under $WB_HOME/weights-sha, keyed on each file's path, size and
    modification time (as git's index does): hashing a 1B model's weights takes seconds, and a checkpoint is
    usually hashed by every command that touches it."""
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )
    stats = [(str(f.resolve()), st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()]]
    cached = None
    if sum(size for _, size, _ in stats) >= SHA_CACHE_MIN_BYTES:
        cached = home() / "weights-sha" / hashlib.sha256(json.dumps(stats).encode()).hexdigest()
        try:
            return cached.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            pass
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    sha = h.hexdigest()
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
            tmp.write_text(sha + "\n")
            os.replace(tmp, cached)
        except OSError:  # a read-only WB_HOME only costs the next command the hashing
            pass
    return sha


def _read_meta(path: Path) -> dict:
    meta_path = path / META_NAME if path.is_dir() else path.with_name(path.name + ".wb.json")
    if not meta_path.exists():
        return {}
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{meta_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def resolve_checkpoint(ref: str | os.PathLike, *, with_sha: bool = True) -> Checkpoint:
    """Turn a user's checkpoint reference into a Checkpoint, or raise BadInput saying what is wrong."""
    if str(ref) == DEFAULT_REF:
        from workbench.models import ensure_default_model

        return ensure_default_model()
    path = Path(ref).expanduser()
    if not path.exists():
        raise BadInput(f"checkpoint '{ref}': no such file or directory")
    meta = _read_meta(path)
    if path.is_file():
        if path.suffix != ".gguf":
            raise BadInput(f"checkpoint '{ref}': a file checkpoint must be a .gguf file")
        _check_gguf_magic(path)
        kind, fmt = meta.get("kind", "quantized"), "gguf"
        base = meta.get("base")
    elif (path / "adapter_config.json").exists():
        kind, fmt = "adapter", "peft"
        base = meta.get("base") or _adapter_base(path)
    elif (path / "config.json").exists():
        kind = meta.get("kind", "merged")
        fmt = meta.get("format", "hf")
        base = meta.get("base")
        if not any(p.suffix in (".safetensors", ".bin") for p in path.iterdir()):
            raise BadInput(f"checkpoint '{ref}': config.json but no weights (*.safetensors or *.bin)")
    else:
        raise BadInput(
            f"checkpoint '{ref}': not a model folder (no config.json), adapter (no adapter_config.json) or .gguf file"
        )
    sha = weights_sha(path) if with_sha else meta.get("sha", "")
    return Checkpoint(path=path.resolve(), name=meta.get("name") or path.name, kind=kind, format=fmt, base=base,
                      sha=sha, parent=meta.get("parent"), extra=meta.get("extra", {}))


def _adapter_base(path: Path) -> str | None:
    try:
        cfg = json.loads((path / "adapter_config.json").read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path / 'adapter_config.json'}: not valid JSON ({exc.msg})") from None
    return cfg.get("base_model_name_or_path")


def _check_gguf_magic(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise BadInput(f"checkpoint '{path}': not a GGUF file (bad magic)")
