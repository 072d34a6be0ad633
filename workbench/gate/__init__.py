"""Release gates: rules on a run's metrics with paired significance tests, their verdicts, and the reports CI reads."""
