"""Where a replay's conversations are answered: in this process, or (`wb replay --ray ADDRESS`) in shards on a Ray
cluster, joined as `wb sweep --ray` joins it (workbench.sweep.ray_cluster.connect).

On Ray, each worker is an actor that loads the candidate (and the baseline) once, in its runtime, and answers every
shard sent to it: one engine per candidate per worker. The driver keeps a window of shards in flight, takes their
answers back in shard order (the sequential test must see the log in the order drawn, not in the order answers
happen to finish), judges them and writes the run: the store has one writer. Stopping early cancels the shards not
yet taken. Ray restarts a worker that dies (`max_restarts`) and retries its shard (`max_task_retries`).
"""

from collections import deque
from collections.abc import Iterator

from workbench.config import GenerationSpec

MAX_RESTARTS = 2


Prompt = tuple[list[dict], list[dict] | None]  # a conversation's messages and its logged tools (None: none)


def answer_shard(cand_rt, base_rt, prompts: list[Prompt], generation: GenerationSpec
                 ) -> tuple[list[str], list[str] | None]:
    """The candidate's answers to `prompts` (each rendered with its logged tools), and the baseline's (None when the
    baseline is the log)."""
    messages = [m for m, _ in prompts]
    tools = [t for _, t in prompts] if any(t for _, t in prompts) else None
    cand = _final_answers(cand_rt, cand_rt.generate(messages, generation, tools=tools))
    if base_rt is None:
        return cand, None
    return cand, _final_answers(base_rt, base_rt.generate(messages, generation, tools=tools))


def _final_answers(runtime, answers: list[str]) -> list[str]:
    """A reasoning model's answers as the judge and the checks must see them: the thinking stripped, as `wb eval`
    strips it (ChatFormat.strip_reasoning; thinking that never closes leaves no answer)."""
    chat_format = runtime.chat_format()
    if not chat_format.reasoning_markers():
        return answers
    return [chat_format.strip_reasoning(a)[0] for a in answers]


def local_answers(cand_rt, base_rt, shards: list[list[Prompt]], generation: GenerationSpec) -> Iterator[tuple]:
    """(candidate answers, baseline answers or None) per shard, in order, answered in this process."""
    for prompts in shards:
        yield answer_shard(cand_rt, base_rt, prompts, generation)


class ShardWorker:
    """A Ray actor: the candidate's and the baseline's runtimes, opened once on the worker, answering shards."""

    def __init__(self, candidate, baseline, options: dict, generation: GenerationSpec):
        from workbench.system.library_defaults import apply_library_defaults

        apply_library_defaults()  # before torch loads in a fresh worker process
        from workbench.runtimes import open_runtime

        self.cand = open_runtime(candidate, options["candidate"])
        self.base = open_runtime(baseline, options["baseline"]) if baseline is not None else None
        self.generation = generation

    def answer(self, prompts: list[Prompt]) -> tuple[list[str], list[str] | None]:
        return answer_shard(self.cand, self.base, prompts, self.generation)

    def where(self) -> str:
        import socket

        import ray

        return f"node {ray.get_runtime_context().get_node_id()[:8]} ({socket.gethostname()})"


class RayShards:
    """The workers on the cluster, and the shards sent to them."""

    def __init__(self, ray, request, workers: int | None = None):
        self.ray = ray
        alive = [n for n in ray.nodes() if n["Alive"]]
        self.nodes = [{"node": n["NodeID"][:8], "resources": n.get("Resources", {})} for n in alive]
        count = workers or len(alive)
        actor = ray.remote(ShardWorker).options(num_cpus=1, max_restarts=MAX_RESTARTS,
                                                max_task_retries=MAX_RESTARTS)
        self.workers = [actor.remote(request.candidate, request.baseline, request.runtime_options,
                                     request.generation) for _ in range(count)]

    def describe(self) -> dict:
        return {"workers": len(self.workers), "nodes": self.nodes,
                "worker_nodes": self.ray.get([w.where.remote() for w in self.workers])}

    def answers(self, shards: list[list[Prompt]]) -> Iterator[tuple]:
        """(candidate answers, baseline answers or None) per shard, in shard order; at most two shards per worker in
        flight; the shards not taken are cancelled when the caller stops."""
        window = 2 * len(self.workers)
        pending: deque = deque()
        upcoming = iter(enumerate(shards))
        try:
            for i, prompts in upcoming:
                pending.append(self.workers[i % len(self.workers)].answer.remote(prompts))
                if len(pending) >= window:
                    yield self._get(pending.popleft())
            while pending:
                yield self._get(pending.popleft())
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def _get(self, ref):
        from workbench.errors import EnvironmentProblem, WorkbenchError
        from workbench.system.failures import described

        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:  # the worker's own code failed: its error, as it was
            cause = getattr(exc, "cause", None)
            if isinstance(cause, WorkbenchError):
                raise cause from None
            raise EnvironmentProblem(f"--ray: a replay worker failed: {described(cause or exc)}") from None
        except self.ray.exceptions.RayError as exc:  # the worker or its node died, after Ray's restarts
            raise EnvironmentProblem(f"--ray: a replay worker died ({MAX_RESTARTS} restarts): {described(exc)}"
                                     ) from None

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker)
        self.ray.shutdown()
