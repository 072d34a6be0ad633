"""`wb dashboard`: the Streamlit app over the store, on 127.0.0.1 unless told otherwise (workbench.dashboard.serve)."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import StoreOpt


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    store: Optional[Path] = StoreOpt,
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (anything but loopback is exposed)."),
    dashboards_dir: Optional[str] = typer.Option(None, "--dashboards-dir", help="Your own app folder."),
):
    """Serve the comparison dashboard."""
    from workbench.dashboard.serve import serve

    return serve(store, port=port, host=host, dashboards_dir=dashboards_dir)
