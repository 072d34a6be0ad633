"""The loss log a training run records, read from the Trainer's own log history: that history is saved in every
checkpoint, so a resumed run's log holds the steps before the kill too, as an uninterrupted run's does."""

import time

SIGNALS = ("rewards/chosen", "rewards/margins", "reward")  # preference and GRPO trainers' learning signals


def loss_rows(log_history: list[dict]) -> list[dict]:
    return [{"step": e["step"], "loss": e["loss"], "learning_rate": e.get("learning_rate"),
             "elapsed_s": e.get("elapsed_s"), **{k: e[k] for k in SIGNALS if k in e}}
            for e in log_history if "loss" in e and "step" in e]


def loss_log_callback(transformers, on_log=None):
    """Stamps each logged loss with the training time so far (summed over resumed processes) and reports it."""

    class LossLog(transformers.TrainerCallback):
        started = offset = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or not state.log_history:
                return
            if self.offset is None:  # a resumed run's history (loaded after on_train_begin) holds earlier time
                before = [e["elapsed_s"] for e in state.log_history[:-1] if e.get("elapsed_s") is not None]
                self.offset = before[-1] if before else 0.0
            entry = state.log_history[-1]  # the Trainer's copy of `logs`, which the next checkpoint saves
            entry["elapsed_s"] = round(self.offset + time.monotonic() - self.started, 2)
            if on_log:
                on_log(loss_rows([entry])[0])

    return LossLog()
