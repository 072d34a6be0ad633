"""Gate reports for CI: JUnit XML (one testcase per gate), a Markdown summary, JSON."""

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Mapping

from workbench.gate.rules import GateReport, GateResult
from workbench.store.files import strict_json, write_text_atomic

SUITE_NAME = "wb gate"
TEST_NAMES = {"mcnemar-exact": "McNemar (exact)", "mcnemar-chi2": "McNemar (χ², corrected)",
              "bootstrap": "paired bootstrap", "normal-unpaired": "normal (unpaired)"}


# ---- JUnit --------------------------------------------------------------------------------------------------

def junit_xml(report: GateReport) -> str:
    failures = len(report.failures)
    skipped = sum(r.status == "skip" for r in report.results)
    counts = {"tests": str(len(report.results)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": "0"}
    suites = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": f"{SUITE_NAME}: {report.checkpoint}", **counts})
    props = ET.SubElement(suite, "properties")
    for name, value in (("run_id", report.run_id), ("checkpoint", report.checkpoint),
                        ("baseline_id", report.baseline_id), ("baseline_checkpoint", report.baseline_checkpoint)):
        if value:
            ET.SubElement(props, "property", {"name": name, "value": value})
    for policy in report.uncalibrated_judge:
        ET.SubElement(props, "property", {"name": f"uncalibrated_judge:{policy['gate']}",
                                          "value": _uncalibrated(policy)})
    for r in report.results:
        case = ET.SubElement(suite, "testcase", {"classname": f"wb.gate.{r.task}", "name": r.gate, "time": "0"})
        if r.status == "fail":
            ET.SubElement(case, "failure", {"message": r.reason, "type": "GateFailed"}).text = _details(r)
        else:
            if r.status == "skip":
                ET.SubElement(case, "skipped", {"message": r.reason})
            ET.SubElement(case, "system-out").text = _details(r)
    errs = report.warnings + [_uncalibrated(p) for p in report.uncalibrated_judge]
    if errs:
        ET.SubElement(suite, "system-err").text = "\n".join(errs)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(report: GateReport, path: Path) -> Path:
    path = Path(path)
    write_text_atomic(path, junit_xml(report))
    return path


def _details(r: GateResult) -> str:
    lines = [f"{r.gate}: {r.status} ({r.reason})", f"value={_num(r.value)} baseline={_num(r.baseline_value)} "
             f"delta={_num(r.delta, '+.4f')} n={r.n}", f"test={r.test} p={_p(r.p_value)} ci={_ci(r)}"]
    return "\n".join(lines + [f"warning: {w}" for w in r.warnings])


# ---- Markdown ------------------------------------------------------------------------------------------------

def render_markdown(report: GateReport) -> str:
    n = len(report.results)
    head = (f"## ✅ wb gate passed ({n} gate{'s' * (n != 1)})" if report.passed
            else f"## ❌ wb gate failed ({len(report.failures)} of {n} gates)")
    against = (f" vs baseline **{_md(report.baseline_checkpoint)}** (run `{report.baseline_id}`)"
               if report.baseline_id else " (no baseline)")
    lines = [head, "", f"**{_md(report.checkpoint)}** (run `{report.run_id}`){against}", "",
             "| | gate | value | baseline | Δ | n | test | p | CI of Δ | rule |",
             "|---|---|---:|---:|---:|---:|---|---:|---|---|"]
    for r in report.results:
        icon = {"pass": "✅", "fail": "❌", "skip": "⏭️"}[r.status]
        lines.append(f"| {icon} | {_md(r.gate)} | {_num(r.value)} | {_num(r.baseline_value)} | "
                     f"{_num(r.delta, '+.4f')} | {r.n if r.n is not None else '-'} | "
                     f"{TEST_NAMES.get(r.test, r.test or '-')} | {_p(r.p_value)} | {_ci(r)} | {_md(_rule(r))} |")
    if report.uncalibrated_judge:
        lines += ["", "**Judge not calibrated against people** (run with `--allow-uncalibrated-judge`)", ""]
        lines += [f"- `{_md(p['gate'])}`: {_md(_uncalibrated(p))}" for p in report.uncalibrated_judge]
    if report.failures:
        lines += ["", "**Failed**", ""] + [f"- `{r.gate}`: {_md(r.reason)}" for r in report.failures]
    warnings = report.warnings + [f"`{r.gate}`: {w}" for r in report.results for w in r.warnings]
    if warnings:
        lines += ["", "**Warnings**", ""] + [f"- {_md(w)}" for w in warnings]
    return "\n".join(lines) + "\n"


def _uncalibrated(policy: dict) -> str:
    return (f"the judge ({policy['scorer']}) gated without earning it (--allow-uncalibrated-judge): "
            + "; ".join(policy["missing"]))


def _rule(r: GateResult) -> str:
    spec = r.spec
    parts = [f"{key} {spec[key]:g}" for key in ("min_value", "max_value", "max_drop") if key in spec]
    return ", ".join(parts) + f" (α={spec.get('significance', 0.05):g})" * ("max_drop" in spec)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _p(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def _ci(r: GateResult) -> str:
    if r.ci_low is None:
        return "-"
    level = 1 - r.spec.get("significance", 0.05)
    return f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}] ({level:.0%})"


def gate_table(report: GateReport):
    """The Markdown table's rows as a rich Table, for the terminal."""
    from rich.table import Table

    from workbench.system.console import markup_text, plain

    failed = f"[red]failed ({len(report.failures)} of {len(report.results)})[/]"
    verdict = "[green]passed[/]" if report.passed else failed
    table = Table(title=f"gate {verdict}: {markup_text(report.checkpoint)} vs "
                        f"{markup_text(report.baseline_checkpoint or 'no baseline')}")
    for col in ("gate", "value", "baseline", "Δ", "n", "test", "p", "CI of Δ", "result"):
        table.add_column(col, justify="left" if col in ("gate", "test", "CI of Δ", "result") else "right",
                         overflow="fold")
    colour = {"pass": "green", "fail": "red", "skip": "yellow"}
    for r in report.results:
        table.add_row(plain(r.gate), _num(r.value), _num(r.baseline_value), _num(r.delta, "+.4f"),
                      "-" if r.n is None else str(r.n), TEST_NAMES.get(r.test, r.test or "-"), _p(r.p_value), _ci(r),
                      f"[{colour[r.status]}]{r.status}[/]: {markup_text(r.reason)}")
    return table


def write_markdown(report: GateReport, path: Path) -> Path:
    path = Path(path)
    write_text_atomic(path, render_markdown(report))
    return path


def append_github_summary(markdown: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Append to the file GitHub Actions names in $GITHUB_STEP_SUMMARY; None when that is unset (not in Actions).

    Appended, not replaced: other steps of the job write to the same file.
    """
    target = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as fh:
        fh.write("\n" + (markdown if markdown.endswith("\n") else markdown + "\n"))
    return Path(target)


# ---- JSON and all at once ------------------------------------------------------------------------------------

def write_json(report: GateReport, path: Path) -> Path:
    path = Path(path)
    write_text_atomic(path, strict_json(report.to_dict(), indent=2) + "\n")
    return path


def write_reports(report: GateReport, *, junit: Path | None = None, markdown: Path | None = None,
                  json_path: Path | None = None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Every report asked for, plus the GitHub step summary when running in Actions; returns the files written."""
    written = []
    if junit:
        written.append(write_junit(report, junit))
    if markdown:
        written.append(write_markdown(report, markdown))
    if json_path:
        written.append(write_json(report, json_path))
    summary = append_github_summary(render_markdown(report), environ)
    if summary:
        written.append(summary)
    return written
