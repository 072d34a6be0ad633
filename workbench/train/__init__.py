"""Thin PEFT + TRL recipes: the libraries train, wb adds config, data checks and bookkeeping."""
