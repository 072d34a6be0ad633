"""Streamlit's server for `wb dashboard`, with the pages' heavy imports warmed while it starts.

    python -m workbench.dashboard.server run APP.py [streamlit options...]

Streamlit runs a page's script only when a browser connects, so the first visitor used to wait for pandas,
plotly's figure validators, the gate's statistics and pandas' Styler (about a second of a 2-core CPU) on top of
the frontend bundle. Here a background thread loads them as soon as the server process starts.
"""

import sys
import threading


def _warm() -> None:
    import numpy  # noqa: F401
    import pandas.io.formats.style  # noqa: F401
    import plotly.express  # noqa: F401
    import plotly.graph_objects as go

    go.Figure(go.Bar(x=[0], y=[0], error_y={"type": "data", "array": [0]})).to_json()  # loads the validators

    import workbench.compare.runs  # noqa: F401
    import workbench.config  # noqa: F401
    import workbench.dashboard.views  # noqa: F401
    import workbench.gate.rules  # noqa: F401


def main() -> None:
    # pandas first, here: plotly (imported by streamlit in this thread) looks pandas up in sys.modules without
    # importing it, and a pandas half-imported by the warming thread crashed the server at start
    # ("partially initialized module 'pandas' has no attribute 'Series'").
    import pandas  # noqa: F401

    threading.Thread(target=_warm, name="wb-warm-imports", daemon=True).start()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main()


if __name__ == "__main__":
    main()
