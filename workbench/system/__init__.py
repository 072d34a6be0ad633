"""The machine and the process: where wb keeps things, heavy-library imports, child processes, locks, environment,
library defaults, fault points, output-path checks, and library errors as one-line errors."""
