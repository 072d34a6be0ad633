"""`wb data check FILE`: duplicates, token-length outliers, rendered samples and contamination, before training."""

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.options import JsonOpt
from workbench.cli.output import emit_json, out
from workbench.system.console import info, plain

data_app = typer.Typer(help="Training-data checks.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("check")
def check(
    file: Path = typer.Argument(..., help="Training data (JSONL): messages, ShareGPT, Alpaca, prompt/completion "
                                          "or preference rows."),
    against: list[str] = typer.Option([], "--against", help="Eval data to check for contamination: a suite, an lm-eval "
                                                            "task the mirror holds (mmlu, mmlu_<subject>, gsm8k) or a "
                                                            "JSONL file. Repeatable."),
    template: str = typer.Option("default", "--template", help="Checkpoint whose tokenizer and chat template measure "
                                                               "and render the rows ('none' to skip)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Declare the row format instead of detecting it."),
    ngram: int = typer.Option(13, "--ngram", min=1, help="Word n-gram length for contamination (lm-eval uses 13)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Benchmark mirror (default: $WB_DATA_DIR)."),
    evals_dir: Optional[str] = typer.Option(None, "--evals-dir", help="Folder of suites (default: the bundled one)."),
    json_out: bool = JsonOpt,
):
    """Check training data before a long run. Exits 1 when rows are contaminated by the eval data."""
    from workbench.data.check import check_data
    from workbench.errors import GateFailed

    report = check_data(file, against=against, template=template, format=fmt, ngram=ngram, data_dir=data_dir,
                        evals_dir=evals_dir)
    if json_out:
        emit_json(report.to_dict())
    else:
        _print(report)
    if report.contamination and report.contamination.hits:
        raise GateFailed(f"{file}: {len(report.contamination.contaminated_rows)} rows share {ngram}-grams with the "
                         "eval data (listed above)")


def _print(report) -> None:
    from rich.table import Table

    table = Table(title=plain(f"wb data check: {report.path} ({report.format}, {report.rows} rows)"), show_header=False)
    table.add_row("exact duplicates", f"{len(report.exact_duplicates)} groups" + (
        f": lines {'; '.join(', '.join(map(str, g)) for g in report.exact_duplicates[:5])}" if report.exact_duplicates else ""))
    table.add_row("near duplicates", f"{len(report.near_duplicates)} groups" + (
        f": lines {'; '.join(', '.join(map(str, g)) for g in report.near_duplicates[:5])}" if report.near_duplicates else ""))
    if report.lengths:
        ln = report.lengths
        table.add_row("tokens per row", f"min {ln['min']}, median {ln['median']}, max {ln['max']}; "
                      f"{ln['outlier_count']} outliers above {ln['outlier_above']}"
                      + (f" (lines {', '.join(str(o['line']) for o in ln['outliers'][:10])})" if ln["outliers"] else ""))
    c = report.contamination
    if c is not None:
        table.add_row(f"contamination ({c.n}-grams)",
                      f"{len(c.contaminated_rows)} of {c.rows} rows overlap {c.eval_items} eval items"
                      + (f"; {c.unchecked_short_items} eval items are shorter than {c.n} words (unchecked)"
                         if c.unchecked_short_items else ""))
    out.print(table)
    if c is not None and c.hits:
        hits = Table(title="contaminated rows", show_lines=False)
        for col in ("line", "eval item", "shared n-grams", "eval text"):
            hits.add_column(col)
        for h in c.hits:
            hits.add_row(str(h.row), plain(h.item.source), f"{h.shared}/{h.row_ngrams}", plain(h.item.text[:90]))
        out.print(hits)
    for sample in report.rendered:
        info(f"--- line {sample['line']}, rendered with the chat template ---")
        out.print(plain(sample["text"]), highlight=False)  # the row as text: its escapes shown, not run
