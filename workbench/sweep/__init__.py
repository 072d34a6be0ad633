"""`wb sweep`: checkpoints × suites as independent evaluation units, in-process or as Ray tasks on a cluster."""
