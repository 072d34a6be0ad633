"""AlpacaEval 2.0: its 805 instructions with the reference model's answers (gpt4_1106_preview, the baseline every
AlpacaEval 2.0 win rate is measured against) read from the data mirror's `alpaca_eval/` folder; judge verdicts
turned into AlpacaEval preferences (1 baseline better, 2 model better, 1.5 tie) and scored by the alpaca-eval
package's own `get_winrate` and `get_length_controlled_winrate`; and AlpacaEval's own annotator prompt
(weighted_alpaca_eval_gpt4_turbo, read from the installed package) with its logprob-weighted preference.

The length-controlled win rate's GLM needs `df_gamed.csv` (instruction difficulty and the gamed baselines'
annotations), which alpaca-eval downloads from the hub dataset tatsu-lab/alpaca_eval. wb never lets it reach the
network: it hands the library the file from the mirror (`alpaca_eval/df_gamed.csv`) or from the Hugging Face cache,
and without either reports the win rate alone, saying why."""

import contextlib
import math
import warnings
from pathlib import Path

from workbench import benchmarks
from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.extras import require
from workbench.system.user_files import load_json

FOLDER = "alpaca_eval"
OUTPUTS = "gpt4_1106_preview_outputs.json"
REFERENCE = "gpt4_1106_preview"
ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
DF_GAMED = "df_gamed.csv"
HUB_REPO = "tatsu-lab/alpaca_eval"
PURPOSE = "AlpacaEval 2.0's win rates"
# AlpacaEval's annotator answers with one token: "m" names the first output shown, "M" the second.
FIRST, SECOND = "m", "M"


def metric_names(label: str) -> list[str]:
    """The metrics an alpaca_eval scorer reports (before breakdowns)."""
    return [f"{label}.win_rate", f"{label}.length_controlled_winrate"]


def mirror_file(data_dir: Path | None, name: str) -> Path:
    return benchmarks.mirror_file(FOLDER, data_dir, name, "AlpacaEval 2.0's instructions and reference outputs")


def load_items(data_dir: Path | None) -> list[dict]:
    """The 805 instructions as chat items; the reference model's answer is each item's reference (the default
    baseline), its `dataset` the item's metadata (for `breakdown`)."""
    path = mirror_file(data_dir, OUTPUTS)
    rows = load_json(path, "AlpacaEval's reference outputs", max_bytes=64 << 20)
    if not isinstance(rows, list) or not rows:
        raise BadInput(f"{path}: expected a JSON list of {{instruction, output, dataset}} rows")
    items = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("instruction", "output")):
            raise BadInput(f"{path}: row {i} lacks the strings 'instruction' and 'output'")
        items.append({"id": f"alpaca_eval-{i:03d}", "messages": [{"role": "user", "content": row["instruction"]}],
                      "reference": row["output"], "tags": [],
                      "metadata": {"dataset": row.get("dataset"), "index": i,
                                   "generator": row.get("generator", REFERENCE)}})
    return items


def check_suite(config, baseline_run, baseline_given: bool, data_dir: Path | None) -> None:
    """Before any model loads: every alpaca_eval scorer has what it compares against, its annotator and its
    df_gamed.csv when it asks for the length-controlled win rate."""
    for task in config.tasks:
        for spec in (s for s in task.scorers if s.type == "alpaca_eval"):
            _library()  # the chat extra and a setuptools that still has pkg_resources
            where = f"suite {config.name}: task {task.name}: scorer {spec.label}"
            if spec.against == "baseline" and not baseline_given:
                raise BadInput(f"{where} has against: baseline: give --baseline (a run or a checkpoint)")
            if spec.against == "baseline" and baseline_run is not None and \
                    baseline_run.manifest.get("suite") != config.name:
                raise BadInput(f"--baseline {baseline_run.run_id}: a run of suite "
                               f"'{baseline_run.manifest.get('suite')}', not '{config.name}': {where} compares "
                               "answers to the same instructions")
            if spec.annotator == "alpaca_eval" and not config.judge.base_url:
                raise BadInput(f"{where}: annotator: alpaca_eval needs judge.base_url (an external endpoint; "
                               "AlpacaEval's prompt is written for GPT-4-class judges)")
            if spec.length_controlled and df_gamed_path(data_dir) is None:
                raise EnvironmentProblem(f"{where}: length_controlled: true needs {DF_GAMED} in the mirror's "
                                         f"{FOLDER}/ or the Hugging Face cache (dataset {HUB_REPO})")


def _library(module: str = "alpaca_eval.metrics"):
    """An alpaca_eval module. alpaca-eval 0.6 imports pkg_resources, which setuptools 81 removed (the lock pins
    setuptools below 81); its deprecation warning is the library's, not the user's business."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        try:
            return require(module, PURPOSE, "chat")
        except ModuleNotFoundError as exc:
            if exc.name == "pkg_resources":
                raise EnvironmentProblem("alpaca-eval needs pkg_resources, which setuptools >= 81 removed: "
                                         "pip install 'setuptools<81' (scripts/setup.sh installs the lock's)") from None
            raise


def df_gamed_path(data_dir: Path | None) -> Path | None:
    """df_gamed.csv from the mirror, else from the Hugging Face cache (never downloaded), else None."""
    if data_dir is not None and (path := Path(data_dir) / FOLDER / DF_GAMED).is_file():
        return path
    hub = require("huggingface_hub", PURPOSE, "chat")
    cached = hub.try_to_load_from_cache(HUB_REPO, DF_GAMED, repo_type="dataset")
    return Path(cached) if isinstance(cached, str) else None


@contextlib.contextmanager
def _offline_hub(df_gamed: Path):
    """glm_winrate fetches df_gamed.csv with hf_hub_download: while this is active it gets the file found here."""
    glm = _library("alpaca_eval.metrics.glm_winrate")

    def local_only(repo_id, filename, **_):
        if (repo_id, filename) != (HUB_REPO, DF_GAMED):
            raise EnvironmentProblem(f"alpaca-eval asked for {repo_id}/{filename}: wb does not download")
        return str(df_gamed)

    saved = glm.hf_hub_download
    glm.hf_hub_download = local_only
    try:
        yield
    finally:
        glm.hf_hub_download = saved


def annotation_rows(records: list[dict], generator: str, baseline: str) -> list[dict]:
    """AlpacaEval annotations from wb's per-sample records ({index, instruction, output, baseline_output,
    preference}); records without a preference (a failed judge call) are left out."""
    return [{"index": r["index"], "instruction": r["instruction"], "output_1": r["baseline_output"],
             "output_2": r["output"], "generator_1": baseline, "generator_2": generator, "annotator": "wb",
             "preference": float(r["preference"])} for r in records if r.get("preference") is not None]


def win_rates(rows: list[dict], *, data_dir: Path | None, length_controlled: bool | None = None) -> dict:
    """alpaca-eval's metrics of `annotation_rows`: win_rate, standard_error, n_wins, n_wins_base, n_draws, n_total,
    discrete_win_rate and, where df_gamed.csv is found (or `length_controlled` is true: else exit 4),
    length_controlled_winrate, lc_standard_error and `glm_preference` per row index. Without it,
    `length_controlled_skipped` says why. Percentages, as alpaca-eval reports them."""
    pd = require("pandas", PURPOSE, "chat")
    metrics = _library()
    frame = pd.DataFrame(rows).set_index("index")  # glm_winrate looks instruction difficulty up by the index
    frame.index.name = None
    out = {k: _plain(v) for k, v in metrics.get_winrate(frame).items()}
    if length_controlled is False:
        out["length_controlled_skipped"] = "length_controlled: false"
        return out
    found = df_gamed_path(data_dir)
    if found is None:
        reason = (f"no {DF_GAMED} (alpaca-eval's instruction difficulties, from the hub dataset {HUB_REPO}) in "
                  f"the mirror's {FOLDER}/ or the Hugging Face cache")
        if length_controlled:
            raise EnvironmentProblem(f"length_controlled: true needs {reason}")
        out["length_controlled_skipped"] = reason
        return out
    with _offline_hub(found), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = metrics.get_length_controlled_winrate(frame, save_weights_dir=None, is_warn_extreme_changes=False)
    out["length_controlled_winrate"] = _plain(lc["length_controlled_winrate"])
    out["lc_standard_error"] = _plain(lc["lc_standard_error"])
    out["glm_preference"] = {int(i): float(p) for i, p in frame["glm_preference"].items()}
    out["df_gamed"] = str(found)
    return out


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


# ---- AlpacaEval's own annotator --------------------------------------------------------------------------------

def annotator_config() -> dict:
    """weighted_alpaca_eval_gpt4_turbo's configs.yaml entry, and its prompt template's text, from the installed
    package."""
    yaml = require("yaml", PURPOSE)
    folder = Path(_library("alpaca_eval").__file__).parent / "evaluators_configs"
    config = yaml.safe_load((folder / ANNOTATOR / "configs.yaml").read_text())[ANNOTATOR]
    return {**config, "template": (folder / config["prompt_template"]).read_text()}


def annotator_prompts(rows: list[dict]) -> list[tuple[list[dict], bool]]:
    """(messages, switched) per row of {instruction, output_1 (baseline), output_2 (model)}: the outputs in the
    order AlpacaEval shows them (its seeded random switch on the instruction), in its prompt as chat messages."""
    pd = require("pandas", PURPOSE, "chat")
    utils = _library("alpaca_eval.utils")
    processors = _library("alpaca_eval.processors")
    switch = processors.RandomSwitchTwoColumnsProcessor(two_columns_to_switch=["output_1", "output_2"],
                                                        random_seed_columns=["instruction"],
                                                        _switch_column="is_switched_outputs", seed=0)
    shown = switch.preprocess(pd.DataFrame(rows, columns=["instruction", "output_1", "output_2"]))
    prompts, _ = utils.make_prompts(shown, annotator_config()["template"])
    return [(utils.prompt_to_chatml(p), bool(s)) for p, s in zip(prompts, shown["is_switched_outputs"])]


def annotator_request() -> dict:
    """The completion settings of AlpacaEval's annotator (one token, its top logprobs)."""
    kwargs = annotator_config()["completions_kwargs"]
    return {"max_tokens": kwargs["max_tokens"], "logprobs": True, "top_logprobs": kwargs["top_logprobs"]}


def annotator_preference(content: str, top_logprobs: list[dict] | None, switched: bool) -> float | None:
    """AlpacaEval's preference (1 baseline better .. 2 model better) from the annotator's reply: the
    logprob-weighted one (alpaca-eval's logprob_parser) when the endpoint returned top_logprobs, else the chosen
    token; None when neither names an output."""
    parser = _library("alpaca_eval.completion_parsers")
    kwargs = annotator_config()["completion_parser_kwargs"]
    shown = None
    if top_logprobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shown = parser.logprob_parser({"logprobs": {"content": [{"top_logprobs": top_logprobs}]}},
                                          kwargs["numerator_token"], kwargs["denominator_tokens"],
                                          is_binarize=kwargs["is_binarize"])[0]
        shown = None if math.isnan(shown) else float(shown)
    if shown is None:
        shown = {FIRST: 1.0, SECOND: 2.0}.get(content.strip())
    if shown is None:
        return None
    return 3.0 - shown if switched else shown  # back to output_1 = baseline, as AlpacaEval's postprocess does
