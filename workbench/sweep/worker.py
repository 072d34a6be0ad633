"""A group's units, evaluated where they run (in-process, or a Ray worker): each checkpoint's model loads once
for all of its suites (under vLLM, one engine for the whole group: a base and its adapters), each unit is a
`wb eval` run recorded in a scratch store, and each finished run goes back whole to the driver, which lands it in
the one store.

A unit that fails on its own input is reported and the group goes on; a worker that dies takes the group with it
and Ray runs the group again (the driver lands each unit once)."""

import shutil
import tempfile
import time
from pathlib import Path

from workbench.sweep.plan import Group, Settings, Unit


def evaluate_group(group: Group, settings: Settings, reporter, *, where: str = "local"):
    """Yields one outcome per unit as it finishes: {"unit", "status": "ok", "run_id", "files", "seconds"} or
    {"unit", "status": "failed", "error", "exit_code", "seconds"}. KeyboardInterrupt is not caught."""
    from workbench.system.library_defaults import apply_library_defaults

    apply_library_defaults()  # before torch loads in a fresh worker process
    from workbench.eval.harness import VLLM
    from workbench.store import Store

    scratch = Path(tempfile.mkdtemp(prefix="wb-sweep-"))
    try:
        store = Store(scratch)
        if settings.run_options["backend"] == VLLM:
            from workbench.runtimes.vllm_engine import plan_loras

            plan_loras(group.lora_rank)
        ckpt, loaded = None, None  # the checkpoint of the units so far, and its ref
        for unit in group.units:
            reporter.started(unit.id, where)
            started = time.monotonic()
            try:
                if loaded != unit.ref:
                    ckpt = None  # the previous checkpoint's model is let go before the next one loads
                    ckpt, loaded = _load_checkpoint(unit.ref, settings), unit.ref
                run = _run_unit(ckpt, unit, settings, store, where)
                outcome = {"unit": unit.id, "status": "ok", "run_id": run.run_id,
                           "files": store.run_files(run.run_id)}
            except Exception as exc:  # noqa: BLE001  (a unit's failure is reported, the others go on)
                from workbench.system.failures import reported

                error, code = reported(exc)
                outcome = {"unit": unit.id, "status": "failed", "error": error, "exit_code": code}
            outcome["seconds"] = round(time.monotonic() - started, 2)
            outcome["where"] = where
            reporter.finished(unit.id, outcome["status"])
            yield outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _load_checkpoint(ref: str, settings: Settings):
    """The checkpoint resolved, with its model loaded once when every unit would load it the same way."""
    from workbench.eval.request import checked_checkpoint

    ckpt = checked_checkpoint(ref, settings.base)
    if _shares_model(ckpt, settings):
        from workbench.runtimes.hf import load_model

        ckpt.derived["live_model"] = load_model(ckpt)
    return ckpt


def _shares_model(ckpt, settings: Settings) -> bool:
    """Task generations load float32 on the CPU; lm-eval's hf backend the dtype and device asked for. One model
    serves both only when those agree (GGUF files run in llama.cpp, which maps them: nothing to share)."""
    from workbench.eval.harness import HF, VLLM, resolve_backend, resolve_device

    opts = settings.run_options
    if ckpt.format == "gguf" or opts["backend"] == VLLM:  # vLLM loads the weights in its engine
        return False
    backend = resolve_backend(opts["backend"], ckpt)
    return opts["dtype"] == "float32" and (settings.no_harness or (
        backend == HF and resolve_device(opts["device"], backend) == "cpu"))


def _run_unit(ckpt, unit: Unit, settings: Settings, store, where: str):
    from workbench.eval.request import load_request
    from workbench.eval.runner import EvalOptions, harness_plan, prepare_harness, run_suite

    mirror = Path(settings.data_dir) if settings.data_dir else None
    loaded, specs = load_request(unit.suite, unit.tasks, settings.overrides, evals_dir=settings.evals_dir,
                                 limit=settings.limit, no_harness=settings.no_harness)
    plans = [harness_plan(spec, ckpt, mirror, settings.limit, settings.run_options, prepare_harness(spec, mirror))
             for spec in specs]
    command = f"wb sweep (unit {unit.id})"
    return run_suite(ckpt, loaded, store,
                     EvalOptions(data_dir=mirror, limit=settings.limit, command=command,
                                 sweep={"unit": unit.id, "where": where}, run_options=settings.run_options),
                     harness_plans=plans)
