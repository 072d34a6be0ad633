"""GGUF files read as bytes, without llama.cpp: the magic that says a file is one, and a check that its header,
tensor table and tensor data are all there (a cut download is the usual damage)."""

import struct
from pathlib import Path

from workbench.errors import BadInput

MAGIC = b"GGUF"


def check_gguf_magic(path: Path, what: str = "GGUF") -> None:
    """A BadInput unless `path` is a file that starts with the GGUF magic."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} '{path}': no such file")
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise BadInput(f"{what} '{path}': not a GGUF file (bad magic)")


# GGUF value types -> struct format of one value (8: string, 9: array are read by hand)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def check_gguf_file(path: Path) -> None:
    """Magic, header, tensor table, and that every tensor's data lies inside the file."""
    import mmap

    size = path.stat().st_size
    if size < 24:
        raise BadInput(f"checkpoint '{path}': not a GGUF file (only {size} bytes)")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _check_gguf(_Reader(data, path), path, size)


def _check_gguf(reader: "_Reader", path: Path, size: int) -> None:
    if reader.take(4) != MAGIC:
        raise BadInput(f"checkpoint '{path}': not a GGUF file (bad magic)")
    version = reader.unpack("I")
    if version < 2:
        raise BadInput(f"{path}: GGUF version {version} is too old for llama.cpp")
    n_tensors, n_kv = reader.unpack("Q"), reader.unpack("Q")
    alignment = 32
    for _ in range(n_kv):
        key = reader.string()
        value = reader.value(reader.unpack("I"))
        if key == "general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
    tensors = []
    for _ in range(n_tensors):
        reader.string()
        dims = [reader.unpack("Q") for _ in range(reader.unpack("I"))]
        tensors.append((dims, reader.unpack("I"), reader.unpack("Q")))
    start = -(-reader.pos // alignment) * alignment
    end = max((start + offset + _tensor_bytes(dims, kind) for dims, kind, offset in tensors), default=start)
    if end > size:
        raise BadInput(f"{path}: truncated GGUF file: its tensors need {end} bytes, the file has {size}")


def _tensor_bytes(dims: list[int], kind: int) -> int:
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ImportError, ValueError, KeyError):
        return 1  # an unknown type: at least its first byte must be there
    count = 1
    for d in dims:
        count *= d
    return count // block * type_size


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BadInput(f"{self.path}: truncated GGUF file (its header ends at byte {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("Q")).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.unpack("I"), self.unpack("Q")
            if item in _GGUF_SCALARS:  # skipped, not decoded: a vocabulary's scores are 50k floats
                self.take(count * struct.calcsize(_GGUF_SCALARS[item]))
            else:
                for _ in range(count):
                    self.value(item)
            return None
        raise BadInput(f"{self.path}: not a valid GGUF file (unknown value type {kind} at byte {self.pos})")
