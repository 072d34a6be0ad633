"""The command line: the only place that reads argv/env for options or sets exit codes."""
