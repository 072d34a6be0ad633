"""Training that diverges stops: a non-finite loss, or trainable weights that stopped being finite, end the
training at that step, before the Trainer saves a checkpoint of it, so no adapter of NaNs is ever published.

Valid settings can still diverge (a learning rate of 1e30 is finite; fp16 overflows): this is a run-time check,
the finite-numbers rule on the recipe's own values is config.Strict's."""

import math
from pathlib import Path

from workbench.errors import BadInput


def divergence_callback(transformers, torch, recipe: Path):
    """A TrainerCallback raising BadInput (naming the recipe and the step) when training produces NaN or inf."""

    def diverged(state, what: str) -> BadInput:
        lr = state.log_history[-1].get("learning_rate") if state.log_history else None
        now = f" (the learning rate was {lr:g})" if isinstance(lr, (int, float)) else ""
        return BadInput(f"{recipe}: training diverged at step {state.global_step}: {what}{now}; nothing was saved. "
                        "Lower training.learning_rate or check the data")

    class StopOnNonFinite(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is None:
                return
            with torch.no_grad():
                bad = [name for name, p in model.named_parameters()
                       if p.requires_grad and not bool(torch.isfinite(p).all())]
            if bad:
                raise diverged(state, f"{len(bad)} trainable weight tensor(s) are NaN or inf (first: {bad[0]})")

        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "grad_norm"):
                value = (logs or {}).get(key)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    raise diverged(state, f"the {key.replace('_', ' ')} is {value}")

    return StopOnNonFinite()
