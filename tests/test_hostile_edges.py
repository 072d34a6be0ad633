"""Hostile input at wb's edges (issue 30): a config.json that disagrees with its weights, a --ray address that is
malformed or not Ray, a garbage or read-only index.db, a disk filling during GGUF export, an extra that cannot be
imported, a child process that hangs. Each case meets hostile_support's contract where it is refused."""

import json

import pytest
from hostile_support import check_case, workspace  # noqa: F401  (fixtures)


def _config_disagreeing(ws, g):
    """The tiny Llama with `hidden_size: 12` in its config.json and weights of hidden size 64."""
    config = json.loads((g("tiny_model_dir") / "config.json").read_text())
    return ws.variant(g("tiny_model_dir"), "disagrees", config__json=json.dumps({**config, "hidden_size": 12}))


_MISMATCH = ("disagrees/config.json", "does not match the weights", "model.embed_tokens.weight", "[49152, 64]")

CONFIG_CASES = {
    "eval-config-disagrees-with-weights": (lambda ws, g: ["eval", _config_disagreeing(ws, g), "--suite",
                                                          ws.suite()], 3, _MISMATCH),
    "export-config-disagrees-with-weights": (lambda ws, g: ["export", _config_disagreeing(ws, g), "-o",
                                                            ws.root / "out"], 3, _MISMATCH),
    "train-base-config-disagrees-with-weights": (lambda ws, g: ["train", ws.recipe(base=str(_config_disagreeing(
        ws, g))), "-o", ws.root / "out"], 3, _MISMATCH),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_that_disagrees_with_its_weights_is_refused_before_a_run(name, workspace, request, capsys):
    check_case(CONFIG_CASES[name], workspace, request, capsys)
