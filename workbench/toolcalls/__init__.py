"""Tool calls: the OpenAI shape wb uses everywhere (training rows, eval items, parsed model output, Ollama bundles),
parsing a model's text into calls by its chat format's syntax, and scoring calls by BFCL's AST rules."""
