"""Warnings that libraries log on import or load and that tell a wb user nothing, set aside in one place. Call
`quiet_library_warnings()` before those libraries load, in every process that loads them."""

import logging

# torchao (GPTQModel needs it) warns on every import that its CUDA extensions do not load with CPU-only torch,
# and torch's pytree adds deprecation notes for torchao's enums.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")

# bitsandbytes, on CPUs with AVX512-BF16 (Sapphire Rapids and later), tries to fetch a 4-bit matmul kernel from the
# hub (kernels-community) and warns when it cannot; it then runs its own CPU kernel, as on every other CPU.
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_HUB_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_warnings() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    bnb = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropMessage) for f in bnb.filters):
        bnb.addFilter(_DropMessage(BNB_HUB_KERNEL_MESSAGE))  # only that one: its other warnings still show
