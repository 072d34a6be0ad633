"""Merging: LoRA adapters into their base (streamed, QLoRA, several at once), mergekit merges, and adapter imports,
each verified by logits."""
