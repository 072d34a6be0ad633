"""Comparing runs: what `wb compare` prints and the dashboard shows."""
