"""The report as one HTML file: page.html.j2 rendered by jinja2 with autoescape on (checkpoint names, prompts and
outputs show as text, whatever they hold), plotly's bar charts with plotly.js inline (no server, no network: it
opens from a CI artifact), and the page's own small script for the samples' filter."""

import datetime as dt
import html
from pathlib import Path

from workbench.gate.rules import GateReport
from workbench.report.content import DEFAULT_SAMPLES, report_content
from workbench.store import Run
from workbench.store.files import write_text_atomic
from workbench.system.environment import versions
from workbench.system.extras import require

TEMPLATE = "page.html.j2"
PURPOSE = "the HTML report"


def check_report(path: Path, what: str) -> None:
    """Before any work (a `wb eval` may take hours): the report's folder, and the libraries that render it."""
    from workbench.report.content import check_report_path

    check_report_path(Path(path), what)
    for module in ("jinja2", "plotly.offline"):
        require(module, PURPOSE, "dashboard")


def _text(label: str) -> str:
    """A label for plotly, which reads <b>, <a href> and the like as markup and decodes &lt; &gt; &amp; (not
    &quot;): escaped so, it shows as the text it is."""
    return html.escape(label, quote=False)


def _figure(chart: dict, runs: list[dict], index: int) -> str:
    go = require("plotly.graph_objects", PURPOSE, "dashboard")
    fig = go.Figure()
    for series in chart["series"]:
        run = runs[series["run"]]
        fig.add_trace(go.Bar(
            name=_text(f"{run['letter']} · {run['checkpoint']}"), x=[_text(x) for x in chart["x"]],
            y=series["values"], error_y={"type": "data", "array": series["errors"], "visible": True}))
    title = _text(chart["task"]) + (" — per tag" if chart["kind"] == "breakdown" else "")
    fig.update_layout(title=title, barmode="group", height=340, template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 50, "b": 60}, yaxis_title="value (95% CI)",
                      legend={"orientation": "h", "y": -0.2})
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{index}",
                       config={"displaylogo": False, "responsive": True})


def render_html(runs: list[Run], *, gate: GateReport | None = None, samples: int | None = DEFAULT_SAMPLES,
                allow_differences: bool = False, title: str | None = None) -> str:
    """The page for `runs` (the first one the reference the others are compared with), with `gate`'s results."""
    jinja2 = require("jinja2", PURPOSE, "dashboard")
    offline = require("plotly.offline", PURPOSE, "dashboard")
    content = report_content(runs, gate=gate, samples=samples, allow_differences=allow_differences)
    figures = [{"chart": chart, "html": _figure(chart, content["runs"], i)}
               for i, chart in enumerate(content["charts"])]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(
        content, title=title or "wb report: " + " vs ".join(r["checkpoint"] for r in content["runs"]),
        figures=[{"kind": f["chart"]["kind"], "task": f["chart"]["task"], "html": _markup(f["html"])}
                 for f in figures],
        plotlyjs=_markup(offline.get_plotlyjs()), generated=dt.datetime.now(dt.timezone.utc).isoformat(
            timespec="seconds"), version=versions(["ckpt-workbench"])["ckpt-workbench"])


def _markup(text: str):
    from markupsafe import Markup  # jinja2's own dependency: text the template must not escape (plotly's, built above)

    return Markup(text)


def write_report(runs: list[Run], path: Path, **options) -> Path:
    """Render and write the page atomically (a reader never sees half of it). Options: render_html's."""
    path = Path(path)
    write_text_atomic(path, render_html(runs, **options))
    return path


def report_runs(refs: list, output: Path, *, store=None, samples: int | None = DEFAULT_SAMPLES,
                gates: Path | None = None, allow_differences: bool = False, what: str = "-o") -> Path:
    """What `wb report` runs: runs by id (or Run objects) from `store`, with a gates file applied to the one run
    or to the second of two against the first, written to `output`. Everything is checked before the file is
    written: the output's folder (named as `what`), the runs, the gates."""
    from workbench.errors import BadInput
    from workbench.gate.rules import evaluate_gates, load_gates
    from workbench.store import Store

    check_report(Path(output), what)
    if gates is not None and len(refs) > 2:
        raise BadInput(f"--gates: gates apply to one run, or to a run against its baseline; {len(refs)} runs given")
    st = None if all(isinstance(r, Run) for r in refs) else Store.open(store, writing=False)
    runs = [r if isinstance(r, Run) else st.resolve(r) for r in refs]
    gate = None
    if gates is not None:
        gate = evaluate_gates(runs[-1], runs[0] if len(runs) == 2 else None, load_gates(Path(gates)))
    return write_report(runs, Path(output), gate=gate, samples=samples, allow_differences=allow_differences)
