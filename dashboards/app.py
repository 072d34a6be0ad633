"""ckpt-workbench dashboard: the entry point `wb dashboard` serves (Streamlit multipage).

Pages read the store only through workbench.store / workbench.compare (via workbench.dashboard.views), so every number
shown is the one the CLI prints.
"""

import sys
from pathlib import Path

# The pages live in app_pages/, not pages/: Streamlit takes a pages/ folder beside the entry script for a
# legacy (v1) multipage app and then ignores st.navigation for the first session.
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the pages import store_cache / page_parts from this folder
    sys.path.insert(0, str(HERE))

import store_cache  # noqa: E402
import streamlit as st  # noqa: E402

from workbench.dashboard.views import as_text  # noqa: E402

st.set_page_config(page_title="ckpt-workbench", layout="wide")


# No page icons: Streamlit fetches ":material/...:" icons from fonts.gstatic.com, which an offline machine cannot
# reach (each failed fetch shifted the sidebar and delayed the next click), and emoji need a colour-emoji font.
PAGES = [("leaderboard", "Leaderboard"), ("sweeps", "Sweeps"), ("compare", "Compare"), ("review", "Review"),
         ("exports", "Exports"), ("lineage", "Lineage"), ("runs", "Run detail"), ("training", "Training")]  # file, title; the first is served at /
page = st.navigation([st.Page(str(HERE / "app_pages" / f"{name}.py"), title=title, default=i == 0)
                      for i, (name, title) in enumerate(PAGES)])
with st.sidebar:
    st.caption(f"store: {as_text(store_cache.store().root)}")
    if st.button("Reload store", help="Forget cached reads (they also refresh by themselves when a run is written)."):
        store_cache.clear()
page.run()
