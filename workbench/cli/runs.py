"""`wb runs`: list the runs in the store."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt, StoreOpt
from workbench.cli.output import emit_json, out
from workbench.store.runs import Store
from workbench.system.console import err, markup_text, plain

RUN_KINDS = ("train", "eval", "judge", "merge", "export", "matrix", "canary")


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)


def runs(
    kind: Optional[str] = typer.Option(None, help=f"Only runs of this kind ({', '.join(RUN_KINDS)})."),
    limit: int = typer.Option(50, min=0, help="Show at most N runs (newest first)."),
    rebuild_index: bool = typer.Option(False, "--rebuild-index", help="Rebuild index.db from the run folders."),
    store: Optional[Path] = StoreOpt,
    json_out: bool = JsonOpt,
):
    """List runs, newest first."""
    from rich.table import Table

    if kind is not None and kind not in RUN_KINDS:
        raise typer.BadParameter(f"'{kind}' is not a run kind (choose from {', '.join(RUN_KINDS)})",
                                 param_hint="'--kind'")
    st = Store.open(store, writing=rebuild_index)
    if rebuild_index:
        err.print(f"indexed {st.rebuild_index()} runs in {st.index_path}")
    manifests = st.list_runs(kind=kind, limit=limit)
    if json_out:
        emit_json({"store": str(st.root), "runs": [
            {k: m.get(k) for k in ("run_id", "kind", "status", "created_at", "suite")} | {"checkpoint": (m.get("checkpoint") or {}).get("name")}
            for m in manifests]})
        return
    table = Table(title=plain(f"runs in {st.root}"))
    for col in ("run", "kind", "status", "checkpoint", "suite", "created"):
        table.add_column(col)
    for m in manifests:
        status = m["status"]
        colour = {"ok": "green", "error": "red", "interrupted": "magenta"}.get(status, "yellow")
        table.add_row(plain(m["run_id"]), plain(m["kind"]), f"[{colour}]{markup_text(status)}[/]",
                      plain((m.get("checkpoint") or {}).get("name") or "-"), plain(m.get("suite") or "-"),
                      plain(m["created_at"][:19]))
    out.print(table)
