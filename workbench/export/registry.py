"""Exporters by format name. Each one has check() (cheap, before any model loads), export() and verify().

Only formats that really work are listed; an unknown or unlisted format is refused with the known ones.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput


@dataclass(frozen=True)
class Exporter:
    name: str
    quant_types: tuple[str, ...]
    check: Callable[[Checkpoint, list[str] | str | None], list[str]]
    export: Callable[..., list[Checkpoint]]  # (ckpt, out_dir, quants, progress=True, **options)
    verify: Callable[..., dict]  # (artifacts, source, **options)


def _gguf() -> Exporter:
    from workbench.export.gguf import exporter as gguf
    from workbench.export.gguf import verify as gguf_verify

    def export(ckpt: Checkpoint, out_dir: Path, quants, progress: bool = True, **options) -> list[Checkpoint]:
        return gguf.export_gguf(ckpt, out_dir, quants, progress=progress, **options)

    return Exporter(name="gguf", quant_types=tuple(gguf.QUANT_TYPES), check=gguf.check, export=export,
                    verify=gguf_verify.verify_gguf)


def _hf_quant(method: str) -> Callable[[], Exporter]:
    def make() -> Exporter:
        from functools import partial

        from workbench.export import hf_quant, hf_quant_verify

        bits = hf_quant.METHODS[method]["bits"]
        return Exporter(name=method, quant_types=tuple(f"w{b}a16" for b in bits), check=partial(hf_quant.check, method),
                        export=partial(hf_quant.export_hf_quant, method), verify=hf_quant_verify.verify_hf_quant)

    return make


def _exl2() -> Exporter:
    from workbench.export import exl2, exl2_verify

    return Exporter(name="exl2", quant_types=exl2.QUANT_TYPES, check=exl2.check, export=exl2.export_exl2,
                    verify=exl2_verify.verify_exl2)


_EXPORTERS: dict[str, Callable[[], Exporter]] = {"gguf": _gguf, "gptq": _hf_quant("gptq"), "awq": _hf_quant("awq"),
                                                 "exl2": _exl2}


def export_formats() -> list[str]:
    return sorted(_EXPORTERS)


def get_exporter(fmt: str) -> Exporter:
    key = (fmt or "").strip().lower()
    if key not in _EXPORTERS:
        raise BadInput(f"unknown export format '{fmt}' (choose from {', '.join(export_formats())})")
    return _EXPORTERS[key]()
