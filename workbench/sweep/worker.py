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
    from workbench.store import Store

    scratch = Path(tempfile.mkdtemp(prefix="wb-sweep-"))
    runtime = None
    try:
        store = Store(scratch)
        if settings.run_options["backend"] == "vllm":
            from workbench.runtimes.vllm_engine import plan_loras

            plan_loras(group.lora_rank)
        loaded = None  # the ref of the units' checkpoint so far
        for unit in group.units:
            reporter.started(unit.id, where)
            started = time.monotonic()
            try:
                if loaded != unit.ref:
                    if runtime is not None:  # the previous checkpoint's model is let go before the next one loads
                        runtime.close()
                        runtime = None
                    runtime, loaded = _open(unit.ref, settings), unit.ref
                run = _run_unit(runtime, unit, settings, store, where)
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
        if runtime is not None:
            runtime.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _open(ref: str, settings: Settings):
    """The checkpoint's runtime; under transformers with its model loaded once for every unit when every unit
    would load it the same way: task generations load float32 on the CPU, lm-eval's hf model the dtype and
    device asked for, so one model serves both only when those agree."""
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.runtimes import check_runtime
    from workbench.runtimes.base import RuntimeOptions
    from workbench.runtimes.hf import HFRuntime, load_model, resolve_device

    ckpt = resolve_checked(ref, settings.base)
    options = RuntimeOptions.from_run_options(settings.run_options)
    runtime = check_runtime(ckpt, options)
    shares = runtime is HFRuntime and options.dtype == "float32" and (
        settings.no_harness or resolve_device(options.device) == "cpu")
    return HFRuntime(ckpt, options, model=load_model(ckpt)) if shares else runtime(ckpt, options)


def _run_unit(runtime, unit: Unit, settings: Settings, store, where: str):
    from workbench.eval.request import load_request
    from workbench.eval.runner import EvalOptions, harness_plan, prepare_harness, run_suite

    mirror = Path(settings.data_dir) if settings.data_dir else None
    loaded, specs = load_request(unit.suite, unit.tasks, settings.overrides, evals_dir=settings.evals_dir,
                                 limit=settings.limit, no_harness=settings.no_harness,
                                 data_dir=settings.data_dir)
    plans = [harness_plan(spec, mirror, settings.limit, settings.run_options, prepare_harness(spec, mirror))
             for spec in specs]
    command = f"wb sweep (unit {unit.id})"
    return run_suite(runtime, loaded, store,
                     EvalOptions(data_dir=mirror, limit=settings.limit, command=command,
                                 sweep={"unit": unit.id, "where": where}),
                     harness_plans=plans)
