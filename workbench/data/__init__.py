"""Dataset formats and the demo task's data."""
