"""Experiment trackers: the Trainer's `report_to` loggers for `wb train`, and `wb eval --mlflow` runs.

Secrets stay in the environment: MLflow reads MLFLOW_TRACKING_TOKEN / MLFLOW_TRACKING_USERNAME|PASSWORD and
wandb WANDB_API_KEY themselves; wb neither reads, logs nor records them, and a tracking URI is recorded without
its user:password part and query string (workbench.system.urls).
"""

import json
import re
from pathlib import Path

from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.extras import available, require
from workbench.system.urls import public_url

# Trackers wb has no extra for: wandb installs a `wb` command of its own, which would shadow this one.
NOT_AN_EXTRA = {
    "wandb": "pip install wandb (it installs its own `wb` command, which shadows this one: run "
             "`python -m workbench` after; WANDB_MODE=offline logs without an account)",
    "trackio": "pip install trackio",
}


def check_trackers(report_to: list[str], where: str) -> None:
    """Before any model loads: each tracker's library is importable, else exit 4 naming what to install."""
    for name in report_to:
        if name in NOT_AN_EXTRA:
            if not available(name):
                raise EnvironmentProblem(f"{where}: report_to: {name} needs {name}: {NOT_AN_EXTRA[name]}")
        else:
            require(name, f"{where}: report_to: {name}", "track")


def trainer_trackers(report_to: list[str], run_dir: Path) -> tuple[list[str], list]:
    """transformers' report_to names and extra callbacks. TensorBoard writes into the train run's folder
    (<run>/tensorboard), not the Trainer's output folder, which wb removes when training ends."""
    names = [n for n in report_to if n != "tensorboard"]
    callbacks = []
    if "tensorboard" in report_to:
        from torch.utils.tensorboard import SummaryWriter

        transformers = require("transformers", "Training", "train")
        writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        callbacks.append(transformers.integrations.TensorBoardCallback(tb_writer=writer))
    return names, callbacks


def metric_key(task: str, metric: str) -> str:
    """wb's task + metric as an MLflow metric name (letters, digits, _ - . space : /); lm-eval's
    'exact_match,strict-match' becomes 'gsm8k/exact_match:strict-match'."""
    return re.sub(r"[^\w.\- :/]", "_", f"{task}/{metric.replace(',', ':')}")


def _flat_params(obj, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flat_params(value, f"{prefix}{key}."))
        return out
    if obj is None:
        return {}
    value = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return {re.sub(r"[^\w.\- :/]", "_", prefix[:-1])[:250]: value[:6000]}  # MLflow's key and value limits


def check_mlflow(uri: str) -> None:
    """Before any model loads: mlflow is installed and the tracking server answers (one request, 10 s at most:
    MLflow's own client retries a dead server for minutes)."""
    require("mlflow", "--mlflow", "track")
    if not uri.startswith(("http://", "https://")):
        return  # sqlite:, file: and the like: MLflow creates them on first use
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(public_url(uri).rstrip("/") + "/health", timeout=10).close()  # /health needs no login
    except urllib.error.HTTPError:
        return  # it answered (an auth proxy may refuse /health); the logging itself will say more
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnvironmentProblem(f"--mlflow {public_url(uri)}: the tracking server did not answer ({reason})") from None


def log_eval_run(run, uri: str, experiment: str) -> dict:
    """One MLflow run for a wb eval run: its metrics (and stderrs), the manifest flattened as params, and
    run.json + results.json as artifacts. Returns where it went, for the wb manifest."""
    mlflow = require("mlflow", "--mlflow", "track")
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    manifest = run.manifest
    tags = {"wb.run_id": run.run_id, "wb.kind": manifest["kind"], "wb.suite": manifest.get("suite") or "",
            "wb.checkpoint": (manifest.get("checkpoint") or {}).get("name") or ""}
    created = client.create_run(experiment_id, run_name=run.run_id, tags=tags)
    mlflow_id = created.info.run_id
    Metric, Param = mlflow.entities.Metric, mlflow.entities.Param
    stamp = created.info.start_time
    metrics = []
    for m in run.metrics:
        if isinstance(m.get("value"), (int, float)):
            metrics.append(Metric(metric_key(m["task"], m["metric"]), float(m["value"]), stamp, 0))
        if isinstance(m.get("stderr"), (int, float)):
            metrics.append(Metric(metric_key(m["task"], m["metric"]) + "_stderr", float(m["stderr"]), stamp, 0))
    params = [Param(k, v) for k, v in _flat_params(manifest).items()]
    try:
        for start in range(0, max(len(metrics), 1), 1000):
            client.log_batch(mlflow_id, metrics=metrics[start:start + 1000])
        for start in range(0, len(params), 100):
            client.log_batch(mlflow_id, params=params[start:start + 100])
        for name in ("run.json", "results.json"):
            client.log_artifact(mlflow_id, str(run.path / name))
    except BaseException:
        client.set_terminated(mlflow_id, status="FAILED")
        raise
    client.set_terminated(mlflow_id, status="FINISHED")
    return {"uri": public_url(uri), "experiment": experiment, "run_id": mlflow_id}


def mlflow_uri(value: str, env_uri: str | None) -> str:
    """--mlflow URI, or --mlflow env for $MLFLOW_TRACKING_URI."""
    if value != "env":
        return value
    if not env_uri:
        raise BadInput("--mlflow env: MLFLOW_TRACKING_URI is not set")
    return env_uri
