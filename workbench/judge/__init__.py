"""LLM-as-judge: an OpenAI-compatible client (retries, cache), the local llama.cpp server, grading, reliability."""
