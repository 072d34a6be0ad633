"""Ollama bundles: a Modelfile whose Go TEMPLATE is derived from the Jinja chat template and checked against it."""
