"""Resolve a user's checkpoint reference once, at the edge of a command: `default`, a folder (HF model or PEFT
adapter from any trainer), a `.gguf` file, or a hub id `org/name[@revision]`. An adapter's base is resolved
with it, so the stages get one value holding base, tokenizer source and sha."""

import os
from pathlib import Path

from workbench.checkpoints.adapter_formats import is_adapter_folder
from workbench.checkpoints.checkpoint import DEFAULT_REF, Checkpoint, read_meta, weights_sha
from workbench.checkpoints.gguf_file import check_gguf_magic
from workbench.errors import BadInput


def resolve_checkpoint(ref: str | os.PathLike, *, with_sha: bool = True) -> Checkpoint:
    """Turn a user's checkpoint reference into a Checkpoint, or raise BadInput saying what is wrong."""
    from workbench.checkpoints.default_model import ensure_default_model_dir
    from workbench.checkpoints.hub import parse_hub_id, snapshot

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
    parent, detected = meta.get("parent"), None
    if path.is_file():
        if path.suffix != ".gguf":
            raise BadInput(f"checkpoint '{ref}': a file checkpoint must be a .gguf file")
        check_gguf_magic(path, "checkpoint")
        kind, fmt = meta.get("kind", "quantized"), "gguf"
        base = meta.get("base")
    elif is_adapter_folder(path):
        kind, fmt = "adapter", "peft"
        base, parent, detected = _adapter_base(path, meta)
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
                      sha=sha, parent=parent, extra=meta.get("extra", {}), hub=meta.get("hub"))
    if detected:
        ckpt.extra = {**ckpt.extra, "adapter_format": detected}
    if kind == "adapter" and base:
        try:
            ckpt.base_checkpoint = resolve_base(base, with_sha=with_sha)
        except BadInput as exc:  # raised where the base is needed: `wb eval --base` may name another one
            named = f" (the full-precision form of '{parent['trained_on']}')" if (parent or {}).get("trained_on") else ""
            ckpt.derived["base_error"] = (f"adapter '{path}': its base '{base}'{named} cannot be loaded: {exc}; "
                                          "give the base with --base BASE")
    return ckpt


def resolve_checked(ref: str, base: str | None = None) -> Checkpoint:
    """resolve_checkpoint, with the files checked before the weights are hashed (a large file's hash is cached
    under WB_HOME: a damaged checkpoint must not leave one). `base` (an adapter's --base): the base to put the
    adapter on instead of the one its files name, checked to fit it."""
    from workbench.checkpoints.checks import record_checks

    if base:
        return _resolve_on_base(ref, base)
    ckpt = resolve_checkpoint(ref, with_sha=False)
    record_checks(ckpt)
    if str(ref) != DEFAULT_REF:
        ckpt.sha = weights_sha(Path(ckpt.path))
    return ckpt


def _resolve_on_base(ref: str, base: str) -> Checkpoint:
    from workbench.checkpoints.adapter_fit import check_adapter_fits
    from workbench.checkpoints.checks import record_checks

    ckpt = resolve_checkpoint(ref)
    base_ckpt = resolve_checkpoint(base, with_sha=False)
    if ckpt.kind == "adapter":  # else check_adapter_fits says what is wrong
        record_checks(ckpt, base_ckpt)
    check_adapter_fits(ckpt, base_ckpt)
    ckpt.base = DEFAULT_REF if base == DEFAULT_REF else str(base_ckpt.path)
    ckpt.base_checkpoint = base_ckpt
    return ckpt


def resolve_base(base: str, *, with_sha: bool = False) -> Checkpoint:
    """An adapter's base: `default`, the default model's folder, a path, or a hub id."""
    from workbench.checkpoints.default_model import is_default_model

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


def _adapter_base(path: Path, meta: dict) -> tuple[str | None, dict | None, dict | None]:
    """(base reference, lineage, detected format) of an adapter folder; a BadInput for one that is not PEFT.

    wb's own adapters name their base and lineage in wb_checkpoint.json. Another trainer's name the base in
    adapter_config.json; one trained on a base saved already quantized by bitsandbytes (`…-bnb-4bit`) goes onto
    the full-precision base that name stands for, its lineage recording the quantization it was trained under
    (as wb's own QLoRA adapters do)."""
    from workbench.checkpoints.adapter_formats import detect, import_hint
    from workbench.checkpoints.quantization import prequantized_base

    fmt = detect(path)
    if fmt.format != "peft":
        raise BadInput(import_hint(fmt))
    if meta:
        return meta.get("base") or fmt.base_name, meta.get("parent"), None
    base, parent = fmt.base_name, None
    prequantized = prequantized_base(base)
    if prequantized:
        parent = {"trained_on": base, "quantization": prequantized[1]}
        base = prequantized[0]
        fmt.reasons.append(f"its base '{fmt.base_name}' is bitsandbytes-quantized; merged and evaluated on '{base}'")
    return base, parent, fmt.to_dict()
