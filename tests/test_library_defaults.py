"""Library warnings that say nothing to a wb user are dropped, and only those."""

import importlib.util
import logging
from pathlib import Path

from workbench.system.library_defaults import (
    BNB_CPU_LOGGER,
    BNB_HUB_KERNEL_MESSAGE,
    QUIET_LOGGERS,
    quiet_library_warnings,
)


def test_bitsandbytes_hub_kernel_warning_is_dropped_and_its_other_warnings_kept(caplog):
    quiet_library_warnings()
    quiet_library_warnings()  # idempotent: one filter, not two
    logger = logging.getLogger(BNB_CPU_LOGGER)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING):
        logger.warning(BNB_HUB_KERNEL_MESSAGE + ": %s. Please make sure you already `pip install kernels`",
                       "No module named 'kernels'")
        logger.warning("Some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["Some other bitsandbytes warning"]
    assert all(logging.getLogger(name).getEffectiveLevel() == logging.ERROR for name in QUIET_LOGGERS)


def test_the_dropped_message_is_the_installed_bitsandbytes_own():
    """Read from the installed source, not imported: on a CPU without AVX512-BF16 the warning is never logged, so
    a bitsandbytes that rewords it would otherwise go unnoticed until a user's Sapphire Rapids prints it."""
    spec = importlib.util.find_spec("bitsandbytes")
    assert spec is not None and spec.origin
    source = (Path(spec.origin).parent / "backends" / "cpu" / "ops.py").read_text()
    assert f'"{BNB_HUB_KERNEL_MESSAGE}: %s.' in source
    assert "logger = logging.getLogger(__name__)" in source  # so BNB_CPU_LOGGER is its logger's name
