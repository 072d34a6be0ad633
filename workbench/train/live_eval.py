"""Evals during training (a recipe's `eval_during_training`): the suite runs in-process on the model being
trained, with the code `wb eval --suite` uses, on the base at step 0 (the adapter disabled) and on the adapter
every `every_steps` steps. Each evaluation is an eval run in the store whose manifest links it to the training
run (`lineage: {train_run, step}`). `max_drop` gates (workbench.gate's rule) compare each run with the step-0
run; a failing one stops training at that step and says why.

Training is unaffected by the evaluations: the RNG states (python, numpy, torch) and the train/eval mode are
restored after each one, so a run with evals takes the same optimizer steps as one without.
"""

import contextlib
import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.config import EvalDuringTrainingSpec
from workbench.errors import BadInput
from workbench.store import Run, Store
from workbench.store.files import read_json, write_json_atomic

STATE = "evals.json"  # in the checkpoints folder: the step-0 run and the runs so far, for a resumed run


@dataclass
class LiveEvalPlan:
    spec: EvalDuringTrainingSpec
    suite: object  # LoadedSuite
    harness_specs: list
    prepared: list
    mirror: Path | None


def prepare_live_eval(spec: EvalDuringTrainingSpec, recipe: Path, *, data_dir: Path | None = None,
                      evals_dir: str | None = None) -> LiveEvalPlan:
    """Everything the evals will need, loaded and checked before the model loads: the suite, its task data,
    lm-eval's tasks and the max_drop gates. Anything wrong is one BadInput naming the recipe key."""
    from workbench.eval.runner import harness_spec, prepare_harness
    from workbench.eval.suites import load_suite
    from workbench.gate.rules import check_gates

    where = f"{recipe}: eval_during_training"
    ref = spec.suite
    beside = recipe.parent / ref
    if Path(ref).suffix in (".yaml", ".yml") and not Path(ref).is_absolute() and beside.exists():
        ref = str(beside)  # a suite file named relative to the recipe
    try:
        suite = load_suite(ref, evals_dir=evals_dir, limit=spec.limit)
        if suite.uses_judge:
            raise BadInput(f"suite '{suite.config.name}' has judge scorers, which do not run during training")
        specs = [harness_spec(h, {}, suite.path) for h in suite.config.harness]
        prepared = [prepare_harness(h, data_dir) for h in specs]
        check_gates(spec.max_drop, suite.config, None,
                    lm_eval_tasks=set().union(*(p.task_names() for p in prepared)),
                    metrics=suite.metric_names(), tags=suite.tags())
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None
    return LiveEvalPlan(spec, suite, specs, prepared, data_dir)


class _RngKept:
    """Python, numpy and torch RNG states, put back as they were."""

    def __enter__(self):
        import numpy as np
        import torch

        self.states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state(),
                       torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
        return self

    def __exit__(self, *exc):
        import numpy as np
        import torch

        py, npy, cpu, cuda = self.states
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def live_eval_callback(plan: LiveEvalPlan, store: Store, *, train_run: str, base_ckpt: Checkpoint, base_ref: str,
                       name: str, work_dir: Path, resuming: bool = False, command: str = "", on_event=None,
                       chat_template=None):
    """The TrainerCallback that runs the evals; its `summary()` is what the train run's manifest records and
    its `stopped` (None, or step/gate/reason) says whether a max_drop gate stopped training. `chat_template`: the
    recipe's (chat.named.ChosenTemplate), which the base and each step are prompted with."""
    import transformers

    from workbench.eval.runner import EvalOptions, harness_plan, run_suite
    from workbench.gate.rules import evaluate_gate
    from workbench.runtimes.base import RuntimeOptions
    from workbench.runtimes.hf import HFRuntime

    spec = plan.spec
    say = on_event or (lambda line: None)

    class LiveEval(transformers.TrainerCallback):
        def __init__(self):
            self.base_run: Run | None = None
            self.runs: list[dict] = []
            self.stopped: dict | None = None
            self.earlier_train_runs: list[str] = []

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
            # (the Trainer loads a resumed run's state after on_train_begin: `resuming` says so here)
            saved = read_json(work_dir / STATE) if resuming and (work_dir / STATE).is_file() else {}
            self.earlier_train_runs = saved.get("train_runs", [])
            self.runs = saved.get("runs", [])
            earlier = store.load(saved["base_run"]) if saved.get("base_run") else None
            if earlier and earlier.manifest.get("suite_sha") == plan.suite.sha and earlier.manifest.get("limit") == spec.limit:
                self.base_run = earlier  # measured by the killed process, with this suite
            else:
                self.base_run = self._evaluate(model, 0, base=True)
            self._save_state()

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            step = state.global_step
            if step % spec.every_steps:
                return
            run = self._evaluate(model, step)
            for gate in spec.max_drop:
                result = evaluate_gate(run, self.base_run, gate)
                if result.status == "fail":
                    self.stopped = {"step": step, "max_steps": state.max_steps, "gate": result.gate,
                                    "reason": result.reason, "eval_run": run.run_id,
                                    "base_run": self.base_run.run_id}
                    control.should_training_stop = True
                    say(f"  forgetting gate '{result.gate}' failed at step {step}: {result.reason}; stopping")
                    break
            self._save_state()

        def _evaluate(self, model, step: int, *, base: bool = False) -> Run:
            started = time.monotonic()
            folder = work_dir / ".evals" / f"step-{step}"
            with _RngKept(), _eval_mode(model), (model.disable_adapter() if base else contextlib.nullcontext()):
                ckpt = replace(base_ckpt, derived={}) if base else self._step_checkpoint(model, step, folder)
                if chat_template is not None:
                    ckpt.use_template(chat_template)
                # the base's lm-eval results may come from (and go to) the cache of `wb eval BASE`; an
                # adapter's weights at one step are never seen again, so its requests are not cached
                opts = {"seed": 1234, "use_cache": base}
                runtime = HFRuntime(ckpt, RuntimeOptions(backend="hf", device=str(model.device.type)), model=model)
                plans = [harness_plan(h, plan.mirror, spec.limit, opts, p)
                         for h, p in zip(plan.harness_specs, plan.prepared)]
                lineage = {"train_run": train_run, "step": step, **({"base": True} if base else {})}
                try:
                    run = run_suite(runtime, plan.suite, store, EvalOptions(data_dir=plan.mirror, limit=spec.limit,
                                                                            command=command, lineage=lineage),
                                    harness_plans=plans)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
            self.runs = [r for r in self.runs if r["step"] != step]  # a resumed run redoes the killed one's
            self.runs.append({"step": step, "run_id": run.run_id, "train_run": train_run, "base": base})
            shown = ", ".join(f"{m['task']}/{m['metric']} {m['value']:.4f}" for m in run.metrics[:4]
                              if m.get("value") is not None)
            say(f"  eval at step {step}{' (base)' if base else ''}: {shown} "
                f"({time.monotonic() - started:.0f} s, run {run.run_id})")
            return run

        def _step_checkpoint(self, model, step: int, folder: Path) -> Checkpoint:
            model.save_pretrained(str(folder))  # the adapter only: for its sha, and for lineage
            return Checkpoint(path=folder, name=f"{name}@step-{step}", kind="adapter", format="peft", base=base_ref,
                              sha=weights_sha(folder), parent={"train_run": train_run, "step": step},
                              base_checkpoint=base_ckpt)

        def _save_state(self):
            write_json_atomic(work_dir / STATE, {
                "base_run": self.base_run.run_id if self.base_run else None, "runs": self.runs,
                "train_runs": self.earlier_train_runs + [train_run]})

        def summary(self) -> dict:
            return {"suite": plan.suite.config.name, "every_steps": spec.every_steps, "limit": spec.limit,
                    "base_run": self.base_run.run_id if self.base_run else None, "runs": self.runs,
                    "stopped_early": self.stopped}

    return LiveEval()


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    model.eval()
    if config is not None:
        config.use_cache = True  # generation without the KV cache is quadratic; training turns it off
    try:
        yield
    finally:
        if config is not None:
            config.use_cache = use_cache
        model.train(was_training)
