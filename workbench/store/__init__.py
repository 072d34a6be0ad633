"""Run records on disk plus a SQLite index."""

from workbench.store.runs import Run, Store

__all__ = ["Run", "Store"]
