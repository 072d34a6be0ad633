"""Small pieces several pages share: empty-store messages and run labels."""

import pandas as pd
import store_cache
import streamlit as st

from workbench.dashboard import views
from workbench.store.lineage import ckpt

RECORD_EVAL = "`wb eval CHECKPOINT --suite SUITE` (e.g. `wb eval default --suite contacts`)"


def no_data(what: str, command: str) -> None:
    """Say what is missing and which command records it, then stop the page."""
    st.info(f"No {what} yet: {command} records them in this store ({views.as_text(store_cache.store().root)}).")
    st.stop()


def run_label(manifest: dict) -> str:
    c = ckpt(manifest)
    suite = f" · {manifest['suite']}" if manifest.get("suite") else ""
    return f"{views.checkpoint_label(c)}{suite} · {manifest['run_id']}"


def fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_safe(table: pd.DataFrame) -> pd.DataFrame:
    """st.table renders cells as Markdown: shown as text, '-' stays a dash, names keep their underscores and a
    name that is a Markdown image stays text (views.as_text)."""
    return table.rename(columns=views.as_text).map(views.as_text)
