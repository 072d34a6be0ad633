"""ckpt-workbench: evaluate, gate, merge and export fine-tuned LLM checkpoints.

Importing this package is cheap on purpose: no torch, transformers, lm_eval or llama_cpp.
"""

__version__ = "0.1.0"
