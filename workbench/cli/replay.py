"""`wb replay LOGS... --candidate CKPT (--baseline CKPT | --against-logged)`: logged conversations answered again
by a candidate, judged pairwise against a baseline or the logged answers, into a `replay` run
(workbench.replay.run)."""

from pathlib import Path

import typer

from workbench.cli.options import JsonOpt, StoreOpt, command_line
from workbench.cli.output import emit_json, out
from workbench.errors import GateFailed
from workbench.system.console import info


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)


def replay_cmd(
    logs: list[Path] = typer.Argument(..., help="Logged traffic: JSONL of OpenAI chat-completions request/response "
                                                "pairs (a `wb serve` log), Ollama /api/chat, or a Langfuse export."),
    candidate: str = typer.Option(..., "--candidate", help="The checkpoint that answers again: 'default', a model "
                                                           "or adapter folder, a .gguf file, a hub id or an endpoint "
                                                           "URL (with --endpoint-model)."),
    baseline: str | None = typer.Option(None, "--baseline", help="The checkpoint it is compared with (answers "
                                                                   "the same conversations)."),
    against_logged: bool = typer.Option(False, "--against-logged", help="Compare with the answers in the log "
                                                                        "instead of a baseline model."),
    suite: str | None = typer.Option(None, "--suite", "-s", help="A suite whose judge_pairwise scorer's rubric, "
                                                                    "judge and generation settings to use."),
    judge: Path | None = typer.Option(None, "--judge", help="A YAML file with a `judge:` mapping (as a suite's); "
                                                               "default: the suite's, else the local judge."),
    sample: int | None = typer.Option(None, "--sample", min=1, help="A stratified sample of N conversations "
                                                                       "(by logged model, tools used or not)."),
    seed: int = typer.Option(0, "--seed", help="The sample's and the replay order's seed."),
    fmt: str | None = typer.Option(None, "--format", help="The logs' format (default: detected)."),
    gates_file: Path | None = typer.Option(None, "--gates", help="Gates YAML on the run's `replay` metrics, e.g. "
                                                                    "win_rate.ci_high min_value 0.5 (exit 1 when "
                                                                    "one fails)."),
    batch: int = typer.Option(32, "--batch", min=1, help="Conversations answered and judged between two looks of "
                                                         "the sequential test."),
    alpha: float = typer.Option(0.05, "--alpha", help="The sequential test's level."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1,
                                                 help="The longest answer (default: the suite's, else 256)."),
    backend: str = typer.Option("auto", "--backend", help="Model backend, as for wb eval."),
    endpoint_model: str | None = typer.Option(None, "--endpoint-model", help="For endpoint URLs: the served "
                                                                                "model's name."),
    endpoint_key_env: str | None = typer.Option(None, "--endpoint-key-env", help="For endpoint URLs: the "
                                                                                    "variable holding the key."),
    ray_address: str | None = typer.Option(None, "--ray", help="Answer the conversations in shards on this Ray "
                                                               "cluster: host:port, ray://host:port or auto."),
    workers: int | None = typer.Option(None, "--workers", help="With --ray: workers, each loading the candidate "
                                                               "(and baseline) once (default: one per node)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Local benchmark mirror, for --suite."),
    evals_dir: str | None = typer.Option(None, "--evals-dir", help="Your own evals folder, for --suite."),
    store: Path | None = StoreOpt,
    json_out: bool = JsonOpt,
):
    """Replay logged production conversations through a candidate and compare it with a baseline or the log."""
    from workbench.replay.run import replay

    result = replay([str(p) for p in logs], candidate, baseline=baseline, against_logged=against_logged,
                    suite=suite, judge=judge, sample=sample, seed=seed, fmt=fmt, gates=gates_file, batch=batch,
                    alpha=alpha, max_new_tokens=max_new_tokens, backend=backend, endpoint_model=endpoint_model,
                    endpoint_key_env=endpoint_key_env, data_dir=data_dir, evals_dir=evals_dir, ray=ray_address,
                    workers=workers, store=store,
                    command=command_line())
    if json_out:
        emit_json(result.to_dict())
    else:
        from workbench.compare.runs import results_table

        out.print(results_table(result.run))
        if result.gate is not None:
            from workbench.gate.reports import gate_table

            out.print(gate_table(result.gate))
        seq = result.sequential
        info(f"sequential test ({seq['test']}, alpha {seq['alpha']}): {seq['decision']} after {seq['n_judged']} of "
             f"{seq['n_total']} conversations")
        info(f"run {result.run.run_id} recorded in {result.store.root}")
    if not result.passed:
        raise GateFailed(result.gate.summary())
