"""Checkpoint: what a path on disk is (adapter, merged model, quantized file), where it came from, and its hash.

Metadata is saved beside the weights (`wb_checkpoint.json` in a folder, `<file>.wb.json` beside a file),
so lineage travels with the checkpoint. A user's reference is turned into a Checkpoint once per command by
workbench.checkpoints.resolve; the stages then pass that value around (its resolved base, tokenizer source, chat format).
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import BadInput
from workbench.store.files import write_json_atomic
from workbench.system.home import home

META_NAME = "wb_checkpoint.json"
DEFAULT_REF = "default"

KINDS = ("base", "adapter", "merged", "quantized")
FORMATS = ("hf", "peft", "gguf", "awq", "gptq", "exl2")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
SHA_CACHE_MIN_BYTES = 32 * 2**20
# What a tokenizer is saved as (transformers' save_pretrained and the older vocabulary formats), its chat template
# included: copied beside merged and imported weights, and what tells one tokenizer from another.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja",
                   "chat_template.json")


@dataclass
class Checkpoint:
    path: Path
    name: str
    kind: str
    format: str
    base: str | None = None  # reference to the base checkpoint ("default", a hub id or a path) for adapters
    sha: str = ""
    parent: dict | None = None  # lineage: what this was made from, and how
    extra: dict = field(default_factory=dict)
    hub: dict | None = None  # {"id", "revision", "commit"} when resolved from a Hugging Face hub id
    base_checkpoint: "Checkpoint | None" = field(default=None, repr=False, compare=False)  # resolved, adapters
    derived: dict = field(default_factory=dict, repr=False, compare=False)  # made once per command (chat format)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("base_checkpoint", "derived")}
        d["path"] = str(self.path)
        if self.base_checkpoint is not None:
            base = self.base_checkpoint
            d["base_resolved"] = {"path": str(base.path), "sha": base.sha, **({"hub": base.hub} if base.hub else {})}
        return d

    @property
    def chosen_template(self):
        """The chat template chosen to prompt this checkpoint instead of its own (workbench.chat.named's
        ChosenTemplate; None: its own): a base evaluated as its adapter was trained, `wb eval --chat-template`."""
        return self.derived.get("chat_template")

    def use_template(self, chosen) -> None:
        self.derived["chat_template"] = chosen
        self.derived.pop("chat_format", None)  # derived from the template

    @property
    def tokenizer_source(self) -> Path:
        """The folder the tokenizer loads from: the adapter's own when it saved one, else its base's."""
        if self.kind == "adapter" and not (self.path / "tokenizer_config.json").exists():
            return require_base(self).path
        return self.path

    @property
    def meta_path(self) -> Path:
        return self.path / META_NAME if self.path.is_dir() else self.path.with_name(self.path.name + ".wb.json")

    def save_meta(self) -> None:
        meta = self.to_dict()
        meta.pop("path")
        meta.pop("base_resolved", None)
        write_json_atomic(self.meta_path, meta)


def require_base(ckpt: Checkpoint) -> Checkpoint:
    """The resolved base of an adapter (workbench.checkpoints.resolve sets it)."""
    if ckpt.base_checkpoint is None:
        raise BadInput(ckpt.derived.get("base_error") or f"adapter '{ckpt.path}': adapter_config.json names no base model "
                                                       "(base_model_name_or_path): give it with --base BASE")
    return ckpt.base_checkpoint


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


def read_meta(path: Path) -> dict:
    meta_path = path / META_NAME if path.is_dir() else path.with_name(path.name + ".wb.json")
    if not meta_path.exists():
        return {}
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{meta_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
