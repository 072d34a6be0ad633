"""How far people agree with each other and with the judge, from the store's labels (review.labels).

Every statistic is a library's: Krippendorff's alpha (`krippendorff`; nominal for pairwise verdicts, ordinal for
rubric grades), Cohen's kappa (statsmodels; quadratic-weighted for rubric grades), Fleiss' kappa (statsmodels, for
three reviewers or more), the binomial test of the reviewers' left/right share (scipy). Confidence intervals are
percentile bootstraps over items (`bootstrap_ci`): resampling items, not labels, keeps one item's labels together.

An item's human verdict is its majority label. When the top labels tie (one reviewer says A, the other B; or grades
3 and 4), every tied label is kept: the item counts once per tied label with a weight that sums to one (win rate),
and the judge is compared with each of them (kappa), as the gold export writes one row per tied label. A label
`both_bad` is kept apart from the win rate (counted); against the judge, which has no such verdict, it is a tie.
"""

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from workbench.errors import BadInput
from workbench.review.labels import latest, read_labels, select
from workbench.store.runs import Run, Store
from workbench.system.extras import require

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0
PAIRWISE_CATEGORIES = ("A", "B", "tie", "both_bad")
JUDGE_VERDICT = {"win": "B", "loss": "A", "tie": "tie"}  # B's record, judged with baseline A
POINTS = {"A": 0.0, "B": 1.0, "tie": 0.5}  # B's win rate: ties count half


def kept_labels(values: Sequence) -> list:
    """An item's majority label; every tied label when the top counts tie (sorted, for a stable order)."""
    counts = Counter(values)
    if not counts:
        return []
    top = max(counts.values())
    return sorted(v for v, c in counts.items() if c == top)


def bootstrap_ci(n_items: int, statistic: Callable[[list[int]], float | None], *, level: float = LEVEL,
                 resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float | None, float | None]:
    """Percentile CI of statistic(item indices) over items resampled with replacement (numpy default_rng(seed)).
    Resamples on which the statistic is undefined (None or NaN: e.g. kappa when every label is the same) are left
    out; (None, None) when fewer than half of them are defined."""
    np = require("numpy", "review statistics", "review")
    if n_items < 2:
        return None, None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, n_items, size=n_items).tolist())
        if value is not None and not math.isnan(value):
            values.append(value)
    if len(values) < resamples / 2:
        return None, None
    tail = (1 - level) / 2
    low, high = np.percentile(values, [100 * tail, 100 * (1 - tail)])
    return float(low), float(high)


def _finite(value) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# ---- between reviewers ------------------------------------------------------------------------------------------

def reviewer_agreement(table: dict[str, dict[str, object]], *, ordinal: Sequence | None = None) -> dict:
    """Agreement between reviewers on `table` {item: {reviewer: value}}: Krippendorff's alpha (nominal, or ordinal
    over the values `ordinal`), with Cohen's kappa for two reviewers (quadratic-weighted when ordinal) or Fleiss'
    kappa for more (items every reviewer labelled), each with a bootstrap CI over items."""
    np = require("numpy", "review statistics", "review")
    krippendorff = require("krippendorff", "Krippendorff's alpha", "review")
    reviewers = sorted({r for row in table.values() for r in row})
    items = sorted(i for i, row in table.items() if len(row) >= 2)  # an item one person labelled says nothing
    out = {"reviewers": len(reviewers), "items": len(items), "alpha": None, "alpha_ci": [None, None],
           "level": "ordinal" if ordinal else "nominal", "kappa": None, "kappa_ci": [None, None], "kappa_kind": None}
    if len(reviewers) < 2 or not items:
        return out
    domain = list(ordinal) if ordinal else sorted({v for row in table.values() for v in row.values()}, key=str)
    code = {v: i for i, v in enumerate(domain)}
    matrix = np.array([[code[table[i][r]] if r in table[i] else np.nan for i in items] for r in reviewers],
                      dtype=float)

    def alpha(idx):
        data = matrix[:, idx]
        if len({v for v in data.ravel().tolist() if not math.isnan(v)}) < 2:
            return None  # one value everywhere: alpha is undefined
        return _finite(krippendorff.alpha(reliability_data=data, level_of_measurement=out["level"],
                                          value_domain=list(range(len(domain)))))

    every = list(range(len(items)))
    out["alpha"], out["alpha_ci"] = alpha(every), list(bootstrap_ci(len(items), alpha))
    if len(reviewers) == 2:
        kappa, out["kappa_kind"] = _cohen(weights="quadratic" if ordinal else None), "cohen"
        both = [k for k in every if not np.isnan(matrix[:, k]).any()]

        def stat(idx):
            return kappa(matrix[0, [both[k] for k in idx]], matrix[1, [both[k] for k in idx]], len(domain))
        if both:
            out["kappa"], out["kappa_ci"] = stat(list(range(len(both)))), list(bootstrap_ci(len(both), stat))
    else:
        inter = require("statsmodels.stats.inter_rater", "Fleiss' kappa", "review")
        full = [k for k in every if not np.isnan(matrix[:, k]).any()]
        out["kappa_kind"] = "fleiss"

        def fleiss(idx):
            if not idx:
                return None
            counts, _ = inter.aggregate_raters(matrix[:, [full[k] for k in idx]].T.astype(int),
                                               n_cat=len(domain))
            with warnings.catch_warnings():  # one category everywhere: 0/0, NaN (read as undefined)
                warnings.simplefilter("ignore", RuntimeWarning)
                return _finite(inter.fleiss_kappa(counts))
        if full:
            out["kappa"], out["kappa_ci"] = fleiss(list(range(len(full)))), list(bootstrap_ci(len(full), fleiss))
    return out


def _cohen(weights: str | None):
    """Cohen's kappa of two raters' category codes (statsmodels' cohens_kappa on their contingency table:
    thousands of calls per bootstrap, and it is 30x faster than scikit-learn's, which the tests cross-check)."""
    np = require("numpy", "review statistics", "review")
    inter = require("statsmodels.stats.inter_rater", "Cohen's kappa", "review")

    def kappa(a, b, n_labels: int) -> float | None:
        if len(a) == 0:
            return None
        codes = np.asarray(a, dtype=int) * n_labels + np.asarray(b, dtype=int)
        table = np.bincount(codes, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
        with warnings.catch_warnings():  # both raters constant and equal: 0/0, NaN (read as undefined)
            warnings.simplefilter("ignore", RuntimeWarning)
            return _finite(inter.cohens_kappa(table, wt="quadratic" if weights else None, return_results=False))
    return kappa


# ---- the humans' verdict ----------------------------------------------------------------------------------------

def win_rate(verdicts: dict[str, list[str]]) -> dict:
    """B's win rate over A from each item's kept labels ({item: kept}): B 1, A 0, tie 0.5, tied labels sharing the
    item's weight; items whose kept labels are all both_bad are left out and counted apart. Bootstrap CI."""
    scores = []
    both_bad = 0
    for kept in verdicts.values():
        points = [POINTS[v] for v in kept if v != "both_bad"]
        if points:
            scores.append(sum(points) / len(points))
        else:
            both_bad += 1
    out = {"items": len(scores), "both_bad": both_bad, "win_rate": None, "ci": [None, None],
           "wins": sum(s == 1.0 for s in scores), "losses": sum(s == 0.0 for s in scores),
           "ties": sum(0.0 < s < 1.0 for s in scores)}
    if scores:
        out["win_rate"] = sum(scores) / len(scores)
        out["ci"] = list(bootstrap_ci(len(scores), lambda idx: sum(scores[k] for k in idx) / len(idx)))
    return out


def reviewer_position_bias(labels: list[dict]) -> dict:
    """Per reviewer and overall: the share of decisive pairwise choices (left or right) that picked the left
    answer, with scipy's exact binomial test against 1/2 and its CI (Clopper-Pearson)."""
    stats = require("scipy.stats", "the reviewers' position bias", "review")
    groups = defaultdict(list)
    for lb in labels:
        if lb["choice"] in ("left", "right"):
            groups[lb["reviewer"]].append(lb["choice"] == "left")
            groups["(all)"].append(lb["choice"] == "left")
    out = {}
    for who, picks in sorted(groups.items()):
        test = stats.binomtest(sum(picks), len(picks), 0.5)
        ci = test.proportion_ci(confidence_level=LEVEL)
        out[who] = {"decisive": len(picks), "left_rate": sum(picks) / len(picks), "p_value": float(test.pvalue),
                    "ci": [float(ci.low), float(ci.high)]}
    return out


# ---- the judge against the humans -------------------------------------------------------------------------------

def judge_agreement(pairs: list[list[tuple]], categories: Sequence, *, weights: str | None = None) -> dict:
    """Cohen's kappa of the judge against the humans over items, each a list of (judge, human) pairs (one per kept
    human label), with a bootstrap CI over items."""
    code = {v: i for i, v in enumerate(categories)}
    kappa = _cohen(weights)

    def stat(idx):
        flat = [p for k in idx for p in pairs[k]]
        return kappa([code[j] for j, _ in flat], [code[h] for _, h in flat], len(categories))
    every = list(range(len(pairs)))
    flat = [p for item in pairs for p in item]
    out = {"items": len(pairs), "kappa": stat(every) if pairs else None, "ci": [None, None],
           "exact_agreement": sum(j == h for j, h in flat) / len(flat) if flat else None,
           "weights": weights or "none"}
    if pairs:
        out["ci"] = list(bootstrap_ci(len(pairs), stat))
    return out


def judge_records(run: Run, task: str) -> dict[str, dict[str, dict]]:
    """{scorer label: {item: the judge's record}} from the run's samples of `task`."""
    found = defaultdict(dict)
    for row in run.samples(task):
        for label, rec in (row.get("judge") or {}).items():
            if isinstance(rec, dict):
                found[label][str(row.get("id"))] = rec
    return dict(found)


def pairwise_judge_verdicts(a: Run, b: Run, task: str) -> dict[str, dict[str, str]]:
    """{scorer label: {item: 'A'|'B'|'tie'}}: the pairwise judge's verdicts on [A, B], from B's records judged
    against A (or A's judged against B, mirrored). Records that failed or compare another baseline are left out."""
    out = defaultdict(dict)
    for run, other, flip in ((a, b, True), (b, a, False)):
        for label, recs in judge_records(run, task).items():
            for item, rec in recs.items():
                if rec.get("baseline_run") == other.run_id and rec.get("verdict") in JUDGE_VERDICT:
                    verdict = JUDGE_VERDICT[rec["verdict"]]
                    out[label][item] = {"A": "B", "B": "A"}.get(verdict, verdict) if flip else verdict
    return dict(out)


def rubric_judge_scores(run: Run, task: str) -> dict[str, dict[str, int]]:
    """{scorer label: {item: the judge's grade}} of the run's rubric judge scorers."""
    return {label: {item: rec["score"] for item, rec in recs.items() if isinstance(rec.get("score"), int)}
            for label, recs in judge_records(run, task).items()
            if any("score" in rec for rec in recs.values())}


def judge_pairs_pairwise(labels: list[dict], verdicts: dict[str, str]) -> list[list[tuple]]:
    """Per item the judge has a verdict on: (judge, human) for each kept human label (both_bad as a tie)."""
    by_item = _group(labels, "preferred")
    return [[(verdicts[item], "tie" if h == "both_bad" else h) for h in kept_labels(values)]
            for item, values in sorted(by_item.items()) if item in verdicts]


def judge_pairs_rubric(labels: list[dict], scores: dict[str, int]) -> list[list[tuple]]:
    by_item = _group(labels, "score")
    return [[(scores[item], h) for h in kept_labels(values)] for item, values in sorted(by_item.items())
            if item in scores]


def _group(labels: list[dict], field: str) -> dict[str, list]:
    grouped = defaultdict(list)
    for lb in labels:
        grouped[lb["item"]].append(lb[field])
    return grouped


# ---- one review -------------------------------------------------------------------------------------------------

def review_labels(store: Store, runs: list[Run], task: str | None = None) -> list[dict]:
    """The current labels (one per reviewer and item) about exactly these runs: pairwise for two, rubric for one."""
    kind = "pairwise" if len(runs) == 2 else "rubric"
    return latest(select(read_labels(store).labels, kind=kind, runs=[r.run_id for r in runs], task=task))


def review_stats(store: Store, runs: list[Run], task: str | None = None) -> dict:
    """Everything `wb review stats` reports about the labels of `runs` ([A, B] pairwise, [R] rubric), per task."""
    from workbench.judge.reliability import pairwise_reliability

    labels = review_labels(store, runs, task)
    pairwise = len(runs) == 2
    out = {"kind": "pairwise" if pairwise else "rubric", "runs": [r.run_id for r in runs],
           "suite": runs[0].manifest.get("suite"), "labels": len(labels),
           "per_reviewer": dict(sorted(Counter(lb["reviewer"] for lb in labels).items())), "tasks": {}}
    for name in sorted({lb["task"] for lb in labels}):
        mine = [lb for lb in labels if lb["task"] == name]
        field = "preferred" if pairwise else "score"
        table = defaultdict(dict)
        for lb in mine:
            table[lb["item"]][lb["reviewer"]] = lb[field]
        scale = mine[0].get("scale") if not pairwise else None
        entry = {"labels": len(mine), "items": len(table),
                 "per_reviewer": dict(sorted(Counter(lb["reviewer"] for lb in mine).items())),
                 "reviewers": reviewer_agreement(
                     table, ordinal=None if pairwise else list(range(scale[0], scale[1] + 1))),
                 "judge": {}}
        if pairwise:
            entry["win_rate"] = win_rate({item: kept_labels(row.values()) for item, row in table.items()})
            entry["reviewer_position"] = reviewer_position_bias(mine)
            for label, verdicts in pairwise_judge_verdicts(runs[0], runs[1], name).items():
                agreement = judge_agreement(judge_pairs_pairwise(mine, verdicts), ("A", "B", "tie"))
                judged = [(rec, row["output"]) for row in runs[1].samples(name)
                          if str(row.get("id")) in table and isinstance(rec := (row.get("judge") or {}).get(label),
                                                                        dict)
                          and rec.get("baseline_run") == runs[0].run_id and "verdict" in rec]
                bias = pairwise_reliability([r for r, _ in judged], [o for _, o in judged]) if judged else {}
                agreement["judge_position"] = {k: bias.get(k) for k in ("flip_rate", "first_position_rate")}
                entry["judge"][label] = agreement
        else:
            for label, scores in rubric_judge_scores(runs[0], name).items():
                entry["judge"][label] = judge_agreement(judge_pairs_rubric(mine, scores),
                                                        list(range(scale[0], scale[1] + 1)), weights="quadratic")
        out["tasks"][name] = entry
    return out


# ---- the judge's calibration for a gate ------------------------------------------------------------------------

def judge_calibration(store: Store, suite: str, task: str, label: str, kind: str) -> dict:
    """How far judge scorer `label` of `suite`'s `task` agrees with people, over every run of the store labelled
    for it: the current labels of `kind` ('pairwise' or 'rubric') and the judge's kappa against their majority,
    the judge's verdicts read from the labelled runs' samples (runs no longer in the store are left out)."""
    labels = [lb for lb in latest(select(read_labels(store).labels, kind=kind, task=task)) if lb["suite"] == suite]
    pairs, used = [], 0
    by_runs = defaultdict(list)
    for lb in labels:
        by_runs[tuple(lb["runs"])].append(lb)
    categories = ("A", "B", "tie")
    weights = None
    for ids, group in sorted(by_runs.items()):
        try:
            runs = [store.load(i) for i in ids]
        except (BadInput, OSError):  # a deleted or unreadable run: its labels cannot be paired with a judge
            continue
        used += len(group)
        if kind == "pairwise":
            pairs += judge_pairs_pairwise(group, pairwise_judge_verdicts(runs[0], runs[1], task).get(label, {}))
        else:
            lo, hi = group[0]["scale"]
            categories, weights = list(range(lo, hi + 1)), "quadratic"
            pairs += judge_pairs_rubric(group, rubric_judge_scores(runs[0], task).get(label, {}))
    out = judge_agreement(pairs, categories, weights=weights)
    out["labels"] = used
    return out


def review_runs(store: Store, refs: list[str]) -> list[Run]:
    """The runs a review is about: one eval run (rubric labels), or two of one suite ([A, B]: pairwise labels)."""
    from workbench.review.labels import check_pair

    runs = [store.resolve(ref) for ref in refs]
    if len(runs) == 2:
        check_pair(*runs)
    elif runs[0].manifest.get("kind") not in (None, "eval"):
        raise BadInput(f"run {runs[0].run_id}: is a {runs[0].manifest.get('kind')} run; review grades eval runs")
    return runs


def report_rows(report: dict) -> list[dict[str, str]]:
    """review_stats' report as rows of text (task, what, value, 95% CI, n): the table `wb review stats` prints and
    the dashboard's Review page shows."""
    out = []
    for name, entry in report["tasks"].items():
        rows = [("labels per reviewer", ", ".join(f"{k} {v}" for k, v in entry["per_reviewer"].items()), None,
                 entry["labels"])]
        rev = entry["reviewers"]
        rows.append((f"reviewers: Krippendorff's alpha ({rev['level']})", rev["alpha"], rev["alpha_ci"], rev["items"]))
        if rev["kappa_kind"]:
            rows.append((f"reviewers: {rev['kappa_kind'].capitalize()}'s kappa", rev["kappa"], rev["kappa_ci"],
                         rev["items"]))
        if "win_rate" in entry:
            wr = entry["win_rate"]
            rows.append((f"human win rate of B (ties half; {wr['both_bad']} both bad apart)", wr["win_rate"],
                         wr["ci"], wr["items"]))
            for who, pos in entry["reviewer_position"].items():
                rows.append((f"left-choice rate: {who} (binomial p {pos['p_value']:.3g})", pos["left_rate"],
                             pos["ci"], pos["decisive"]))
        for label, agree in entry["judge"].items():
            weights = "quadratic-weighted" if agree["weights"] == "quadratic" else "unweighted"
            rows.append((f"judge {label} vs people: Cohen's kappa ({weights})", agree["kappa"], agree["ci"],
                         agree["items"]))
            for key, value in (agree.get("judge_position") or {}).items():
                rows.append((f"judge {label}: {key.replace('_', ' ')}", value, None, None))
        out += [{"task": name, "what": what, "value": _number(value), "95% CI": _interval(ci),
                 "n": "" if n is None else str(n)} for what, value, ci, n in rows]
    return out


def _number(value) -> str:
    if value is None:
        return "n/a"
    return format(value, ".3f") if isinstance(value, float) else str(value)


def _interval(ci) -> str:
    return "" if not ci else "n/a" if ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
