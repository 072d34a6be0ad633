"""Runtimes: where a checkpoint runs (transformers, llama.cpp, vLLM, an OpenAI-compatible endpoint)."""
