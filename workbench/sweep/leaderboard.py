"""A sweep's leaderboard: one row per checkpoint, one column per suite task metric, from the runs it landed.
`wb sweep` prints it and the dashboard's Sweeps page shows it (one code path for both)."""

from workbench.store import Store


def leaderboard(store: Store, units: list[dict]) -> tuple[list[str], list[dict]]:
    """(columns, rows): a row is {"checkpoint", "units_ok", "units_failed", column: value, ...}, sorted by the
    first column, best first by its direction."""
    columns: dict[str, bool | None] = {}
    rows: dict[str, dict] = {}
    for unit in units:
        row = rows.setdefault(unit["checkpoint"], {"checkpoint": unit["checkpoint"], "units_ok": 0,
                                                   "units_failed": 0})
        if unit["status"] != "ok":
            row["units_failed"] += 1
            continue
        row["units_ok"] += 1
        for m in store.load(unit["run_id"]).metrics:
            column = f"{unit['suite']} / {m['task']} / {m['metric']}"
            columns.setdefault(column, m.get("higher_is_better"))
            row[column] = m.get("value")
    ordered = list(rows.values())
    if columns:
        first, higher = next(iter(columns.items()))
        sign = -1 if higher is not False else 1
        ordered.sort(key=lambda r: (r.get(first) is None, sign * (r.get(first) or 0.0)))
    return list(columns), ordered


def leaderboard_table(columns: list[str], rows: list[dict], title: str):
    """leaderboard()'s columns and rows as the table `wb sweep` prints."""
    from rich.table import Table

    from workbench.system.console import plain

    table = Table(title=plain(title))
    table.add_column("checkpoint")
    for column in columns:
        table.add_column(plain(column), justify="right")
    table.add_column("units ok / failed", justify="right")
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), (int, float)) else "-" for c in columns]
        table.add_row(plain(row["checkpoint"]), *cells, f"{row['units_ok']} / {row['units_failed']}")
    return table
