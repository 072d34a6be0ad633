"""How far to trust a judge on this run: position flips, ties, length bias, agreement with human labels."""

import math

from workbench.system.extras import require


def _finite(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def length_correlation(scores: list[float], answers: list[str]) -> dict:
    """Spearman's rho between the judge's score and the answer's length in words (scipy); None when undefined
    (fewer than 3 scored answers, or all scores or all lengths equal)."""
    stats = require("scipy.stats", "The judge's reliability report", "judge")
    lengths = [len(a.split()) for a in answers]
    if len(scores) < 3 or len(set(scores)) < 2 or len(set(lengths)) < 2:
        return {"spearman_rho": None, "p_value": None, "n": len(scores)}
    result = stats.spearmanr(scores, lengths)
    return {"spearman_rho": _finite(result.statistic), "p_value": _finite(result.pvalue), "n": len(scores)}


def rubric_reliability(records: list[dict], answers: list[str]) -> dict:
    ok = [(r["score"], a) for r, a in zip(records, answers) if "error" not in r]
    return {"kind": "rubric", "n": len(records), "errors": len(records) - len(ok),
            "length_correlation": length_correlation([s for s, _ in ok], [a for _, a in ok])}


def pairwise_reliability(records: list[dict], run_answers: list[str]) -> dict:
    """identical: pairs with the same answer on both sides (ties without a judge call, left out of the flip rate);
    flip_rate: share of pairs judged in both orders whose winner changed with the order (those count as ties);
    tie_rate: share of final verdicts that are ties (flips and identical pairs included); first_position_rate: share of decisive
    single-order verdicts that picked answer A; longer_wins_rate: share of decisive final verdicts won by the
    longer answer (pairs of equal length left out); length_correlation: Spearman's rho of the run's points
    (win 1, tie 0.5, loss 0) with the word-length difference run minus baseline."""
    judged = [(r, a) for r, a in zip(records, run_answers) if "verdict" in r]
    n = len(judged)
    both_ways = [r for r, _ in judged if not r.get("identical")]
    said = [o["said"] for r, _ in judged for o in r["orders"]]
    decisive = [s for s in said if s != "tie"]
    longer = []
    for r, answer in judged:
        diff = len(answer.split()) - len(r["baseline_output"].split())
        if r["verdict"] != "tie" and diff != 0:
            longer.append((r["verdict"] == "win") == (diff > 0))
    points = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[r["verdict"]] for r, _ in judged]
    return {
        "kind": "pairwise", "n": len(records), "errors": len(records) - n,
        "identical": n - len(both_ways),
        "flip_rate": sum(r["flipped"] for r in both_ways) / len(both_ways) if both_ways else None,
        "tie_rate": sum(r["verdict"] == "tie" for r, _ in judged) / n if n else None,
        "wins": sum(r["verdict"] == "win" for r, _ in judged), "losses": sum(r["verdict"] == "loss" for r, _ in judged),
        "first_position_rate": sum(s == "A" for s in decisive) / len(decisive) if decisive else None,
        "longer_wins_rate": sum(longer) / len(longer) if longer else None,
        "length_correlation": _length_diff_correlation(points, judged),
    }


def _length_diff_correlation(points, judged) -> dict:
    stats = require("scipy.stats", "The judge's reliability report", "judge")
    diffs = [len(a.split()) - len(r["baseline_output"].split()) for r, a in judged]
    if len(points) < 3 or len(set(points)) < 2 or len(set(diffs)) < 2:
        return {"spearman_rho": None, "p_value": None, "n": len(points)}
    result = stats.spearmanr(points, diffs)
    return {"spearman_rho": _finite(result.statistic), "p_value": _finite(result.pvalue), "n": len(points)}


def gold_agreement(judge_scores: list[int | None], human_scores: list[int], scale: tuple[int, int]) -> dict:
    """Cohen's kappa (unweighted and quadratic-weighted, scikit-learn) of the judge's grades against a person's
    on the same fixed answers; answers the judge failed on are left out and counted."""
    metrics = require("sklearn.metrics", "The judge's agreement with human labels", "judge")
    pairs = [(j, h) for j, h in zip(judge_scores, human_scores) if j is not None]
    out = {"n": len(pairs), "errors": len(human_scores) - len(pairs), "cohen_kappa": None, "quadratic_kappa": None,
           "exact_agreement": None}
    if not pairs:
        return out
    judge, human = [p[0] for p in pairs], [p[1] for p in pairs]
    labels = list(range(scale[0], scale[1] + 1))
    out["exact_agreement"] = sum(j == h for j, h in pairs) / len(pairs)
    out["cohen_kappa"] = _finite(metrics.cohen_kappa_score(human, judge, labels=labels))
    out["quadratic_kappa"] = _finite(metrics.cohen_kappa_score(human, judge, labels=labels, weights="quadratic"))
    return out


def summary_lines(judge: dict) -> list[str]:
    """Human-readable lines for a run's manifest["judge"] block."""
    if not judge or not judge.get("started"):
        return []
    lines = [(f"judge: {judge['requests']} requests sent, {judge['cache_hits']} answers from cache, "
              f"{judge['retries']} retries, {judge['failures']} failed judge calls "
              "(recorded per sample as errors, not scored)")]

    def f(x, spec=".2f"):
        return "n/a" if x is None else format(x, spec)

    for task, by_label in (judge.get("tasks") or {}).items():
        for label, rel in by_label.items():
            if "skipped" in rel:
                lines.append(f"  {task}/{label}: skipped: {rel['skipped']}")
            elif rel["kind"] == "alpaca_eval":
                lines.append(f"  {task}/{label}: {rel['n'] - rel['errors']}/{rel['n']} AlpacaEval annotations "
                             f"({rel['weighted']} weighted by top_logprobs, the others by the chosen token)")
            elif rel["kind"] == "rubric":
                lc = rel["length_correlation"]
                line = (f"  {task}/{label}: {rel['n'] - rel['errors']}/{rel['n']} graded; score~length "
                        f"spearman {f(lc['spearman_rho'])} (p {f(lc['p_value'], '.3f')})")
                if "gold" in rel:
                    g = rel["gold"]
                    line += (f"; vs human gold (n {g['n']}): kappa {f(g['cohen_kappa'])}, quadratic kappa "
                             f"{f(g['quadratic_kappa'])}, exact agreement {f(g['exact_agreement'])}")
                lines.append(line)
            else:
                lc = rel["length_correlation"]
                lines.append(f"  {task}/{label}: {rel['n'] - rel['errors']}/{rel['n']} pairs "
                             f"({rel.get('identical', 0)} identical, judged both ways otherwise); "
                             f"flip rate {f(rel['flip_rate'])}, tie rate {f(rel['tie_rate'])}, "
                             f"wins {rel['wins']} losses {rel['losses']}, A-position rate "
                             f"{f(rel['first_position_rate'])}, longer-wins rate {f(rel['longer_wins_rate'])}, "
                             f"points~length-diff spearman {f(lc['spearman_rho'])}")
            if "length_controlled_skipped" in rel:
                lines.append(f"  {task}/{label}: no length-controlled win rate: {rel['length_controlled_skipped']}")
    return lines
