"""A sweep file turned into units (checkpoint × suite), grouped by checkpoint, every input checked first.

Everything a unit needs is checked here, on the driver, before any unit starts: each checkpoint resolves and its
files pass wb's checks, each suite loads with its data, each lm-eval task list builds. A worker then only
evaluates. Paths in the sweep file are relative to the file's folder."""

from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput, WorkbenchError
from workbench.sweep.config import SweepConfig

GLOB_CHARS = set("*?[")


@dataclass
class Unit:
    id: str  # "<checkpoint> × <suite>": unique in the sweep
    checkpoint: str  # the checkpoint's label in the sweep
    ref: str  # what the worker resolves: an absolute path, a hub id or 'default'
    suite: str | None = None  # a suite name or an absolute YAML path
    tasks: str | None = None  # or an lm-eval task list, comma-separated

    @property
    def suite_label(self) -> str:
        return Path(self.suite).stem if self.suite and self.suite.endswith((".yaml", ".yml")) else (
            self.suite or f"lm-eval:{self.tasks}")


@dataclass
class Group:
    """One task for a worker: one checkpoint's units, whose model loads once for all of them. Under vLLM, every
    checkpoint on one engine (a base and its adapters, each a LoRA request), in checkpoint order."""

    units: list[Unit] = field(default_factory=list)
    lora_rank: int | None = None  # vLLM: the largest adapter rank in the group, for the engine's max_lora_rank


@dataclass
class Settings:
    """The `wb eval` settings every unit runs with, resolved on the driver (paths absolute)."""

    overrides: dict
    run_options: dict
    limit: int | None
    no_harness: bool
    data_dir: str | None
    evals_dir: str | None
    base: str | None


def expand_checkpoints(config: SweepConfig, sweep_file: Path) -> list[tuple[int, str, str]]:
    """(entry index, label, ref) per checkpoint: globs expanded in order, each path once."""
    from workbench.checkpoints.checkpoint import DEFAULT_REF
    from workbench.checkpoints.hub import parse_hub_id

    folder = sweep_file.parent
    out: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for i, given in enumerate(config.checkpoints):
        where = f"{sweep_file}: checkpoints[{i}] '{given}'"
        path = Path(given).expanduser()
        path = path if path.is_absolute() else folder / path
        if given == DEFAULT_REF or (not path.exists() and not GLOB_CHARS & set(given) and parse_hub_id(given)):
            found = [(given, given)]
        elif GLOB_CHARS & set(given):
            matches = sorted(Path(path.anchor).glob(str(path.relative_to(path.anchor))))
            if not matches:
                raise BadInput(f"{where}: matches no file or folder")
            found = [(_label(m, folder), str(m.resolve())) for m in matches]
        elif not path.exists():
            raise BadInput(f"{where}: no such file or folder ({path})")
        else:
            found = [(given, str(path.resolve()))]
        for label, ref in found:
            if ref not in seen:
                seen.add(ref)
                out.append((i, label, ref))
    return out


def _label(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def plan_sweep(config: SweepConfig, sweep_file: Path) -> tuple[list[Group], Settings]:
    """The groups to run, and their settings; a BadInput naming the sweep file's entry for anything wrong."""
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.eval.request import harness_overrides, run_options
    from workbench.runtimes import check_runtime
    from workbench.runtimes.base import RuntimeOptions
    from workbench.system.home import data_dir as resolve_data_dir

    folder = sweep_file.parent
    evals_dir = str(_relative_to(folder, config.evals_dir)) if config.evals_dir else None
    overrides = harness_overrides(config.num_fewshot, config.batch_size, config.chat_template, None, None)
    if config.gen_kwargs:
        overrides["gen_kwargs"] = config.gen_kwargs
    opts = run_options(seed=config.seed, dtype=config.dtype, device=config.device, backend=config.backend,
                       no_cache=config.no_cache, vllm_args=config.vllm_args)
    mirror = resolve_data_dir(_relative_to(folder, config.data_dir) if config.data_dir else None)
    base = config.base
    if base and base != "default" and _relative_to(folder, base).exists():
        base = str(_relative_to(folder, base).resolve())
    settings = Settings(overrides=overrides, run_options=opts, limit=config.limit, no_harness=config.no_harness,
                        data_dir=str(mirror) if mirror else None, evals_dir=evals_dir, base=base)

    requests: list[tuple[str | None, str | None]] = []
    for i, ref in enumerate(config.suites):
        suite = ref
        if ref.endswith((".yaml", ".yml")) or _relative_to(folder, ref).is_file():
            suite = str(_relative_to(folder, ref).resolve())
        requests.append((suite, None))
        _checked(f"{sweep_file}: suites[{i}]", _check_suite, suite, None, settings)
    for i, tasks in enumerate(config.tasks):
        requests.append((None, tasks))
        _checked(f"{sweep_file}: tasks[{i}]", _check_suite, None, tasks, settings)

    groups: dict[str, Group] = {}
    for i, label, ref in expand_checkpoints(config, sweep_file):
        where = f"{sweep_file}: checkpoints[{i}]" + (f" ({label})" if label != config.checkpoints[i] else "")
        ckpt = _checked(where, resolve_checked, ref, settings.base)
        runtime = _checked(where, check_runtime, ckpt, RuntimeOptions.from_run_options(opts))
        engine = _engine_of(ckpt, settings) if runtime.key == "vllm" else None
        group = groups.setdefault(engine["key"] if engine else ref, Group())
        if engine and engine["rank"]:
            group.lora_rank = max(group.lora_rank or 0, engine["rank"])
        for suite, tasks in requests:
            unit = Unit(id="", checkpoint=label, ref=ref, suite=suite, tasks=tasks)
            unit.id = f"{label} × {unit.suite_label}"
            group.units.append(unit)
    groups = list(groups.values())
    ids = [u.id for g in groups for u in g.units]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise BadInput(f"{sweep_file}: unit '{dup}' appears twice (the same suite listed twice?)")
    return groups, settings


def _engine_of(ckpt, settings: Settings) -> dict:
    """Which vLLM engine the checkpoint runs on, and the LoRA rank it needs there (None for a plain model)."""
    from workbench.runtimes.vllm import vllm_model_args
    from workbench.runtimes.vllm_engine import adapter_rank, engine_key

    args = vllm_model_args(ckpt, settings.run_options["dtype"], settings.run_options["vllm_args"])
    adapter = args.get("lora_local_path")
    return {"key": engine_key(args), "rank": adapter_rank(Path(adapter)) if adapter else None}


def _check_suite(suite, tasks, settings: Settings) -> None:
    """The suite loads with its data, and its lm-eval tasks build: what `wb eval` checks before a model loads."""
    from workbench.eval.request import load_request
    from workbench.eval.runner import prepare_harness

    loaded, specs = load_request(suite, tasks, settings.overrides, evals_dir=settings.evals_dir,
                                 limit=settings.limit, no_harness=settings.no_harness,
                                 data_dir=settings.data_dir)
    mirror = Path(settings.data_dir) if settings.data_dir else None
    for spec in specs:
        prepare_harness(spec, mirror)
    if loaded.uses_judge:
        from workbench.judge.session import check_judge

        check_judge(loaded.config.judge)


def _checked(where: str, check, *args):
    try:
        return check(*args)
    except WorkbenchError as exc:
        raise WorkbenchError.with_exit_code(f"{where}: {exc}", exc.exit_code) from None


def _relative_to(folder: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path
