"""One vLLM engine per base model in a process, shared by everything evaluated on that base.

vLLM's engine start is the expensive part (seconds on a CPU, minutes for a 7B model on a GPU) and it holds most of
the GPU's memory, so a second engine beside the first would not fit. The engine is lm-eval's vLLM model, built
once; lm-eval's tasks run on it as they would under `lm_eval --model vllm`, and the suite's task generations go
to the same engine. An adapter is never merged: it is a LoRA request on its base's engine, so N adapters of one
base evaluate in one engine, each under its own LoRA id.

Engines are told apart by what vLLM loads (base weights, dtype, tokenizer contents, engine arguments); an
adapter with its own tokenizer folder shares its base's engine when the tokenizer's files are the same."""

import gc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.checkpoint import TOKENIZER_FILES

# vLLM's LoRAConfig.max_lora_rank accepts only these
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
ENGINE_ONLY_ARGS = ("lora_local_path",)  # per request, not per engine
PATH_ARGS = ("pretrained", "tokenizer", "lora_local_path")
PURPOSE = "The vLLM backend"


@dataclass
class Engine:
    key: str
    lm: object  # lm-eval's VLLM model; .model is the vllm.LLM
    lora_rank: int | None  # None: built without LoRA
    args: dict = field(default_factory=dict)  # what it was built with, paths aside (dtype, --vllm-args)
    lora_ids: dict[str, int] = field(default_factory=dict)  # adapter folder -> its LoRA id in this engine

    def lora_request(self, adapter_path: str):
        from vllm.lora.request import LoRARequest

        lora_id = self.lora_ids.setdefault(adapter_path, len(self.lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, adapter_path)


_current: Engine | None = None
_planned_rank: int | None = None  # the largest LoRA rank the next engine should take (a sweep's group)
engine_starts = 0  # engines built in this process (a sweep's figure, and its tests')


def adapter_rank(adapter_dir: Path) -> int:
    """The largest LoRA rank in a PEFT adapter's config (rank_pattern included)."""
    from workbench.store.files import read_json

    config = read_json(adapter_dir / "adapter_config.json")
    return max([int(config.get("r") or 8), *(int(r) for r in (config.get("rank_pattern") or {}).values())])


def vllm_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds `rank`."""
    from workbench.errors import BadInput

    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise BadInput(f"LoRA rank {rank}: vLLM serves adapters up to rank {LORA_RANKS[-1]}")


def check_engine_args(vllm_args: dict) -> None:
    """--vllm-args: each key one vLLM's engine (EngineArgs) or lm-eval's vLLM model takes, and none that wb sets
    itself. Data parallelism is lm-eval's own, an engine per call that nothing else could share: wb refuses it."""
    if not vllm_args:
        return
    import dataclasses
    import inspect

    from workbench.errors import BadInput
    from workbench.system.extras import require

    owned = {"pretrained": "the checkpoint", "model": "the checkpoint", "tokenizer": "the checkpoint",
             "dtype": "--dtype", "lora_local_path": "the adapter", "enable_lora": "the adapter",
             "max_lora_rank": "the adapters' ranks", "seed": "--seed"}
    arg_utils = require("vllm.engine.arg_utils", "The vLLM backend", "vllm")
    lm_eval_vllm = require("lm_eval.models.vllm_causallms", PURPOSE, "eval")
    known = {f.name for f in dataclasses.fields(arg_utils.EngineArgs)}
    known |= set(inspect.signature(lm_eval_vllm.VLLM.__init__).parameters) - {"self", "kwargs"}
    for key, value in vllm_args.items():
        if key in owned:
            raise BadInput(f"--vllm-args {key}: wb sets it from {owned[key]}")
        if key == "data_parallel_size" and value != 1:
            raise BadInput("--vllm-args data_parallel_size: lm-eval starts an engine per call for it, which the "
                           "task generations and other adapters could not share; run a sweep on a Ray cluster "
                           "with one GPU per task (resources.num_gpus) instead, or use tensor_parallel_size")
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise BadInput(f"--vllm-args {key}: not a vLLM engine argument"
                           + (f" (did you mean {close[0]}?)" if close else ""))


def plan_loras(rank: int | None) -> None:
    """Before a group of checkpoints on one base: the engine is built once with room for its largest adapter
    (None: the group has no adapter)."""
    global _planned_rank
    _planned_rank = rank


def engine_lm(model_args: dict, *, batch_size: int):
    """lm-eval's vLLM model for `model_args` (backend_model_args), on the process's engine when that engine
    loads the same thing; else the old engine is released and a new one built. An adapter's LoRA request is set
    on it for lm-eval's requests."""
    global _current, engine_starts
    adapter = model_args.get("lora_local_path")
    rank = adapter_rank(Path(adapter)) if adapter else None
    key = engine_key(model_args)
    engine = _current
    if engine is not None and (engine.key != key or (rank is not None and (engine.lora_rank or 0) < rank)):
        release()
        engine = None
    if engine is None:
        wanted = [r for r in (rank, _planned_rank) if r is not None]
        lora_rank = vllm_lora_rank(max(wanted)) if wanted else None
        engine = Engine(key=key, lm=_build(model_args, lora_rank, batch_size), lora_rank=lora_rank,
                        args={k: v for k, v in model_args.items() if k not in PATH_ARGS})
        engine_starts += 1
        _current = engine
    engine.lm.batch_size = batch_size  # lm-eval's request chunking, read per call
    engine.lm.lora_request = engine.lora_request(adapter) if adapter else None
    return engine.lm


def release() -> None:
    """Shut the engine down and free its memory (its engine-core process ends)."""
    global _current
    if _current is None:
        return
    engine, _current = _current, None
    llm = getattr(engine.lm, "model", None)
    shutdown = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if shutdown is not None and hasattr(shutdown, "shutdown"):
        shutdown.shutdown()
    del engine, llm
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _build(model_args: dict, lora_rank: int | None, batch_size: int):
    from workbench.system.extras import require

    registry = require("lm_eval.api.registry", PURPOSE, "eval")
    args = {k: v for k, v in model_args.items() if k not in ENGINE_ONLY_ARGS}
    if lora_rank is not None:  # lm-eval turns LoRA on only for its own adapter argument
        args.update(enable_lora=True, max_lora_rank=lora_rank)
    return registry.get_model("vllm").create_from_arg_obj(args, {"batch_size": batch_size, "max_batch_size": None})


def engine_key(model_args: dict) -> str:
    """What the engine loads: checkpoints with the same key run on one engine."""
    args = {k: v for k, v in model_args.items() if k not in ENGINE_ONLY_ARGS}
    tokenizer = Path(args.pop("tokenizer", None) or args["pretrained"])
    args["tokenizer_files"] = _tokenizer_sha(tokenizer)
    return hashlib.sha256(repr(sorted(args.items())).encode()).hexdigest()


def _tokenizer_sha(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def describe() -> dict | None:
    """What a run records of the engine it ran on: runs on one engine share its key."""
    if _current is None:
        return None
    return {"engine": _current.key[:16], "engine_starts": engine_starts, "lora_rank": _current.lora_rank,
            "args": _current.args}


def generate(token_prompts: list[list[int]], sampling: dict, *, model_args: dict,
             progress=None, chunk: int = 256) -> list[list[int]]:
    """Generated token ids per prompt, on the engine for model_args (the adapter as its LoRA request)."""
    from vllm import SamplingParams

    lm = engine_lm(model_args, batch_size=8)  # sets lm.lora_request to model_args' adapter (None: none)
    params = SamplingParams(**sampling)
    out: list[list[int]] = []
    for start in range(0, len(token_prompts), chunk):
        part = [{"prompt_token_ids": ids} for ids in token_prompts[start:start + chunk]]
        for result in lm.model.generate(part, params, use_tqdm=False, lora_request=lm.lora_request):
            out.append(list(result.outputs[0].token_ids))
        if progress:
            progress(len(part))
    return out
