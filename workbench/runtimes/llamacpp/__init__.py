"""The llama.cpp runtime (llama-cpp-python): loading GGUF files, batched generation, the lm-eval model, its
OpenAI-compatible server, the build and CPU-variant choice, and llama.cpp's own Python tools."""
