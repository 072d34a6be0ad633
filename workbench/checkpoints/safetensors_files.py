"""Reading and writing .safetensors files one tensor at a time, with plain file reads and writes.

safetensors' own loaders map the whole file: every page a read touches then counts in the process's RSS until the
file is closed, so holding a shard's tensors while it is open costs the shard twice. Reading the byte range of one
tensor with pread costs only that tensor (the page cache is not the process's memory). The format is an 8-byte
little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the
data (offsets relative to its start).
"""

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import BadInput

COPY_CHUNK = 16 << 20
MAX_HEADER_BYTES = 100 << 20
FINITE_CHUNK = 4 << 20

_TORCH_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}

_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str  # safetensors' name: F32, BF16, ...
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F64", "F32", "F16", "BF16")


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    header_bytes: bytes  # the 8-byte length and the JSON, exactly as in the file
    entries: dict[str, TensorEntry]  # in data order

    @property
    def data_size(self) -> int:
        return max((e.end for e in self.entries.values()), default=len(self.header_bytes)) - len(self.header_bytes)


def read_header(path: Path) -> SafetensorsHeader:
    """The header of a .safetensors file (no tensor data is read); a one-line BadInput naming the file when it is
    not one: shorter than its header, a header that is not a JSON object of tensor entries."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise BadInput(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size or n > MAX_HEADER_BYTES:
            raise BadInput(f"{path}: truncated or not a safetensors file (header of {n} bytes, file of {size})")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadInput(f"{path}: not a safetensors file (its header is not a JSON object)")
    base = 8 + n
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            lo, hi = (int(x) for x in info["data_offsets"])
            entries[name] = TensorEntry(name, str(info["dtype"]), tuple(int(d) for d in info["shape"]),
                                        base + lo, base + hi)
        except (TypeError, KeyError, ValueError):
            raise BadInput(f"{path}: not a safetensors file (tensor entry '{name}' has no dtype, shape or "
                           "data_offsets)") from None
    ordered = dict(sorted(entries.items(), key=lambda kv: kv[1].start))
    return SafetensorsHeader(path, head + raw, ordered)


def check_file(path: Path) -> None:
    """The header parses and the tensors it lists fit in the file (a cut file is the usual damage)."""
    header = read_header(path)
    size, end = Path(path).stat().st_size, len(header.header_bytes) + header.data_size
    if end > size:
        raise BadInput(f"{path}: truncated: its header lists {end} bytes, the file has {size}; "
                       "re-save or re-download it")


def shapes(path: Path) -> dict[str, list[int]]:
    """tensor name -> shape, from the header alone."""
    return {name: list(e.shape) for name, e in read_header(path).entries.items()}


def torch_dtype(entry: TensorEntry):
    import torch

    name = _TORCH_DTYPES.get(entry.dtype)
    if name is None:
        raise BadInput(f"tensor '{entry.name}' has dtype {entry.dtype}, which a LoRA merge cannot compute in")
    return getattr(torch, name)


def read_tensor(fh, entry: TensorEntry):
    """A new tensor (its own memory) holding `entry`'s data, read from the open file `fh`."""
    import torch

    buf = bytearray(entry.end - entry.start)
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = os.preadv(fh.fileno(), [view[got:]], entry.start + got)
        if n == 0:
            raise BadInput(f"'{fh.name}' is cut short in tensor '{entry.name}'; re-save or re-download it")
        got += n
    dtype = torch_dtype(entry)
    if not buf:
        return torch.empty(entry.shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype).reshape(entry.shape)


def all_finite(fh, entry: TensorEntry) -> bool:
    """No NaN or inf in a floating-point tensor, read in chunks (isfinite on a whole tensor allocates several
    copies of it)."""
    import torch

    dtype, itemsize = torch_dtype(entry), _ITEMSIZE[entry.dtype]
    step = FINITE_CHUNK - FINITE_CHUNK % itemsize
    buf = bytearray(min(step, entry.end - entry.start))
    for pos in range(entry.start, entry.end, step):
        n = os.preadv(fh.fileno(), [memoryview(buf)[: min(step, entry.end - pos)]], pos)
        if n % itemsize or not n:
            raise BadInput(f"'{fh.name}' is cut short in tensor '{entry.name}'")
        if not bool(torch.isfinite(torch.frombuffer(buf, dtype=dtype, count=n // itemsize)).all()):
            return False
    return True


def copy_bytes(src, dst, entry: TensorEntry) -> None:
    """Copy `entry`'s data from file `src` to the current position of `dst` without holding it: in the kernel
    (sendfile), or in chunks where the file systems do not allow that."""
    import errno

    dst.flush()
    left, pos = entry.end - entry.start, entry.start
    try:
        while left:
            sent = os.sendfile(dst.fileno(), src.fileno(), pos, left)
            if sent == 0:
                raise BadInput(f"'{src.name}' is cut short in tensor '{entry.name}'; re-save or re-download it")
            pos, left = pos + sent, left - sent
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    dst.seek(0, os.SEEK_END)
    while left:
        chunk = os.pread(src.fileno(), min(left, COPY_CHUNK), pos)
        if not chunk:
            raise BadInput(f"'{src.name}' is cut short in tensor '{entry.name}'; re-save or re-download it")
        dst.write(chunk)
        pos, left = pos + len(chunk), left - len(chunk)


def write_tensor(dst, tensor) -> None:
    """Write a tensor's bytes (row-major, little-endian, as the header says) at `dst`'s position."""
    import torch

    flat = tensor.contiguous().reshape(-1)
    if flat.numel():
        dst.write(memoryview(flat.view(torch.uint8).numpy()))
