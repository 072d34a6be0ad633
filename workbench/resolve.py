"""Resolve a user's checkpoint reference once, at the edge of a command: `default`, a folder (HF model or PEFT
adapter from any trainer), a `.gguf` file, or a hub id `org/name[@revision]`. An adapter's base is resolved
with it, so the stages get one value holding base, tokenizer source and sha."""

import json
import os
from pathlib import Path

from workbench.checkpoint import DEFAULT_REF, Checkpoint, read_meta, weights_sha
from workbench.errors import BadInput


def resolve_checkpoint(ref: str | os.PathLike, *, with_sha: bool = True) -> Checkpoint:
    """Turn a user's checkpoint reference into a Checkpoint, or raise BadInput saying what is wrong."""
    from workbench.default_model import ensure_default_model_dir
    from workbench.hub import parse_hub_id, snapshot

    hub = None
    if str(ref) == DEFAULT_REF:
        ckpt = _resolve_path(ensure_default_model_dir(), str(ref), with_sha=False)
        ckpt.name = DEFAULT_REF
        return ckpt
    path = Path(ref).expanduser()
    if not path.exists():
        parsed = parse_hub_id(str(ref))
        if parsed is None:
            raise BadInput(f"checkpoint '{ref}': no such file or directory (nor a hub id org/name[@revision])")
        path, hub = snapshot(*parsed)
    ckpt = _resolve_path(path, str(ref), with_sha=with_sha)
    if hub:
        ckpt.hub, ckpt.name = hub, str(ref)
    return ckpt


def _resolve_path(path: Path, ref: str, *, with_sha: bool) -> Checkpoint:
    meta = read_meta(path)
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
    ckpt = Checkpoint(path=path.resolve(), name=meta.get("name") or path.name, kind=kind, format=fmt, base=base,
                      sha=sha, parent=meta.get("parent"), extra=meta.get("extra", {}), hub=meta.get("hub"))
    if kind == "adapter" and base:
        try:
            ckpt.base_checkpoint = resolve_base(base, with_sha=with_sha)
        except BadInput as exc:  # raised where the base is needed: `wb eval --base` may name another one
            ckpt.derived["base_error"] = f"adapter '{path}': its base '{base}' cannot be loaded: {exc}"
    return ckpt


def resolve_base(base: str, *, with_sha: bool = False) -> Checkpoint:
    """An adapter's base: `default`, the default model's folder, a path, or a hub id."""
    from workbench.default_model import is_default_model

    resolved = resolve_checkpoint(DEFAULT_REF if is_default_model(base) else base, with_sha=with_sha)
    if with_sha and not resolved.sha:
        resolved.sha = weights_sha(resolved.path)
    return resolved


def portable_base(base: Checkpoint, ref: str) -> str:
    """How an adapter trained on `base` (given as `ref`) names it so another machine finds it: `default`, the hub
    id (with its resolved commit), else the path."""
    if base.name == DEFAULT_REF:
        return DEFAULT_REF
    if base.hub:
        return f"{base.hub['id']}@{base.hub['commit']}" if "@" in ref else base.hub["id"]
    return str(base.path)


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
