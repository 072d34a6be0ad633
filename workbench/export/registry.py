"""Exporters by format name. Each one has check() (cheap, before any model loads), export() and verify().

Only formats that really work are listed; an unknown or unlisted format is refused with the known ones.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.checkpoint import Checkpoint
from workbench.errors import BadInput


@dataclass(frozen=True)
class Exporter:
    name: str
    quant_types: tuple[str, ...]
    check: Callable[[Checkpoint, list[str] | str | None], list[str]]
    export: Callable[..., list[Checkpoint]]  # (ckpt, out_dir, quants, progress=True, **options)
    verify: Callable[..., dict]  # (artifacts, source, **options)


def _gguf() -> Exporter:
    from workbench.export import gguf, gguf_verify

    def export(ckpt: Checkpoint, out_dir: Path, quants, progress: bool = True, **options) -> list[Checkpoint]:
        return gguf.export_gguf(ckpt, out_dir, quants, progress=progress, **options)

    return Exporter(name="gguf", quant_types=tuple(gguf.QUANT_TYPES), check=gguf.check, export=export,
                    verify=gguf_verify.verify_gguf)


_EXPORTERS: dict[str, Callable[[], Exporter]] = {"gguf": _gguf}


def export_formats() -> list[str]:
    return sorted(_EXPORTERS)


def get_exporter(fmt: str) -> Exporter:
    key = (fmt or "").strip().lower()
    if key not in _EXPORTERS:
        raise BadInput(f"unknown export format '{fmt}' (choose from {', '.join(export_formats())})")
    return _EXPORTERS[key]()
