"""`wb serve --baseline A --candidate B [--fraction F | --shadow]`: the canary endpoint (workbench.canary)."""

from pathlib import Path

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line, finite
from workbench.cli.output import emit_json
from workbench.system.console import info


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)


def serve_cmd(
    baseline: str = typer.Option(..., "--baseline", help="The model in production: a .gguf file, 'default', a wb "
                                 "checkpoint that is a GGUF (served by llama.cpp's server), or an OpenAI-compatible "
                                 "URL (http://HOST:PORT/v1)."),
    candidate: str = typer.Option(..., "--candidate", help="The model on trial, as --baseline."),
    fraction: float | None = typer.Option(None, "--fraction", min=0.0, max=1.0, callback=finite,
                                          help="Share of users (the X-WB-User header, else the body's `user`, else "
                                               "the first user message) sent to the candidate (default 0.1)."),
    shadow: bool = typer.Option(False, "--shadow", help="Send every request to both; answer with the baseline's "
                                "and log the candidate's beside it."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on (0: any free one)."),
    no_content: bool = typer.Option(False, "--no-content", help="Log no messages, tools or answer text: ids, "
                                    "sides, latencies, token counts and statuses only."),
    baseline_model: str | None = typer.Option(None, "--baseline-model", help="Model name for a URL baseline "
                                              "(default: the first GET /models lists)."),
    candidate_model: str | None = typer.Option(None, "--candidate-model", help="As --baseline-model."),
    baseline_key_env: str | None = typer.Option(None, "--baseline-key-env", help="NAME of the environment variable "
                                                "holding a URL baseline's API key."),
    candidate_key_env: str | None = typer.Option(None, "--candidate-key-env", help="As --baseline-key-env."),
    timeout: float = typer.Option(120.0, "--timeout", min=0.1, callback=finite,
                                  help="Seconds an upstream has to answer before it counts as failed."),
    max_failures: int = typer.Option(5, "--max-failures", min=1, help="Failures in a row that take a side out of "
                                     "rotation."),
    cooldown: float = typer.Option(30.0, "--cooldown", min=0.0, callback=finite,
                                   help="Seconds a side stays out of rotation before a request tries it again."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Threads of each llama.cpp server "
                                       "(default: wb's choice for this machine)."),
    store: Path | None = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Serve an OpenAI-compatible canary endpoint in front of two models, logging every exchange to the store."""
    from workbench.canary.server import serve

    if shadow and fraction is not None:
        raise typer.BadParameter("give --fraction or --shadow, not both", param_hint="'--fraction' / '--shadow'")

    def ready(url: str, log: Path) -> None:
        mode = "shadow" if shadow else f"fraction {0.1 if fraction is None else fraction:g}"
        info(f"canary serving on {url} ({mode}); log: {log}; Ctrl-C stops it")

    run = serve(baseline, candidate, fraction=fraction, shadow=shadow, host=host, port=port, no_content=no_content,
                baseline_model=baseline_model, candidate_model=candidate_model, baseline_key_env=baseline_key_env,
                candidate_key_env=candidate_key_env, timeout_s=timeout, max_failures=max_failures,
                cooldown_s=cooldown, threads=threads, store=store, command=command_line(), on_ready=ready)
    counts = {row["metric"]: row["value"] for row in run.metrics}
    if json_out:
        emit_json({"run_id": run.run_id, "log": str(run.path / run.manifest["log"]), "counts": counts})
    else:
        info(f"canary stopped: {counts.get('records', 0)} exchanges logged in run {run.run_id} "
             f"({run.path / run.manifest['log']})")
