"""Production traffic as an eval: logged conversations read, scrubbed and replayed through a candidate (`wb replay`),
and the canary endpoint that logs them (`wb serve`)."""
