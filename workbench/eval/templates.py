"""The chat template an eval prompts a checkpoint with, chosen before any run opens, and what the run records of it.

- `wb eval --chat-template NAME|FILE` (source `option`) replaces the checkpoint's own template;
- else the checkpoint's own: an adapter's saved with its tokenizer (source `adapter`, the one it was trained with),
  any other checkpoint's files or GGUF metadata (source `checkpoint`);
- a baseline evaluated beside an adapter (or with --chat-template) is prompted as that checkpoint is: a base model
  has no template, and another one would compare formats, not weights (source `adapter` / `option`);
- no template anywhere, for a suite whose tasks render one: exit 3 naming the fix.

The record keeps the template's sha256 (ChatFormat.sha256's hash), its source, and the sha of the template the
checkpoint was trained with (the adapter lineage's `chat_template`, else its own files); when they differ wb warns.
"""

from workbench.chat.named import NAMES, ChosenTemplate, choose_template, template_sha256
from workbench.checkpoints.checkpoint import Checkpoint
from workbench.errors import BadInput
from workbench.system.console import info


def own_template(ckpt: Checkpoint) -> str | None:
    """The template in the checkpoint's own files (a GGUF's tokenizer.chat_template), whatever was chosen for it."""
    if ckpt.format == "gguf":
        from workbench.runtimes.llamacpp.model import gguf_metadata

        path = ckpt.path.parent / ckpt.extra["base_gguf"] if ckpt.kind == "adapter" else ckpt.path  # base + LoRA GGUF
        return gguf_metadata(path).get("chat_template")
    from workbench.runtimes.hf import own_chat_template

    return own_chat_template(ckpt)


def _trainedtemplate_sha256(ckpt: Checkpoint, own: str | None) -> str | None:
    """The sha of the template the checkpoint was trained with: its lineage's record, else its own files'."""
    record = (ckpt.parent or {}).get("chat_template")
    return record.get("sha256") if isinstance(record, dict) and record.get("sha256") else template_sha256(own)


def choose_eval_template(ckpt: Checkpoint, option: str | None, *, needed: bool, what: str = "checkpoint"
                         ) -> tuple[ChosenTemplate | None, dict | None]:
    """(the template to prompt `ckpt` with, the run's record of it); the choice is set on the checkpoint. None,
    None for an endpoint (its server applies its own). BadInput when there is none and `needed`."""
    if ckpt.format == "endpoint":
        if option is not None:
            raise BadInput(f"--chat-template: '{ckpt.path}' is a served endpoint; its server applies its own template")
        return None, None
    chosen = choose_template(option, where="--chat-template") if option is not None else None
    if chosen is not None and ckpt.format == "gguf":
        raise BadInput(f"--chat-template: '{ckpt.path}' is a GGUF file, evaluated with the template embedded in it "
                       "(tokenizer.chat_template); export it from a checkpoint that carries the template instead")
    own = own_template(ckpt)
    if chosen is None and not own:
        if not needed:
            return None, None
        raise BadInput(f"{what} '{ckpt.path}' has no chat template (a base model?): give one with `wb eval "
                       f"--chat-template FILE|NAME` ({', '.join(NAMES)}), or train the adapter with `chat_template:` "
                       "in its recipe")
    if chosen is None:
        source = "adapter" if ckpt.kind == "adapter" and ckpt.tokenizer_source == ckpt.path else "checkpoint"
        chosen = ChosenTemplate(own, source)
    else:
        ckpt.use_template(chosen)
    return chosen, _record(ckpt, chosen, "option" if option is not None else chosen.source, own, what)


def use_for_baseline(base: Checkpoint, template: ChosenTemplate, source: str) -> dict:
    """Prompt the baseline checkpoint with the evaluated checkpoint's template; its run's record."""
    if base.format == "gguf":
        raise BadInput(f"--baseline '{base.path}' is a GGUF file, evaluated with the template embedded in it; give "
                       "the model it was exported from, or a run id")
    own = own_template(base)
    base.use_template(template)
    record = {"source": source, "sha256": template.sha256}
    if own and template_sha256(own) != template.sha256:
        record["own_sha256"] = template_sha256(own)
    return record


def _record(ckpt: Checkpoint, chosen: ChosenTemplate, source: str, own: str | None, what: str) -> dict:
    record = {"source": source, "sha256": chosen.sha256}
    if chosen.source not in ("adapter", "checkpoint"):
        record["name" if chosen.source in NAMES else "file"] = chosen.source
    trained = _trainedtemplate_sha256(ckpt, own)
    if trained:
        record["trained_sha256"] = trained
    if trained and trained != chosen.sha256:
        info(f"warning: {what} '{ckpt.path}' is evaluated with a chat template ({source}, sha256 "
             f"{chosen.sha256[:12]}) other than the one it was trained with (sha256 {trained[:12]}): its answers "
             "may not follow the format it learned")
    return record


def needs_template(suite, harness_specs) -> bool:
    """Whether the suite renders anything with a chat template: a task that chats (generation.chat_template), or
    an lm-eval entry with apply_chat_template."""
    return (any(task.generation.chat_template for task in suite.config.tasks)
            or any(getattr(spec, "apply_chat_template", False) for spec in harness_specs))
