"""GGUF export: llama.cpp's converter and quantizer, adapter GGUFs, importance matrices, the quant ladder, and
verification under llama.cpp."""
