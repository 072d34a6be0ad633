"""Checkpoints: turning a user's reference into a resolved Checkpoint (default model, folder, .gguf, hub id, any
trainer's adapter), and everything read from a checkpoint's files before a model loads."""
