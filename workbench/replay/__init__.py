"""Production traffic as an eval (`wb replay`): logged conversations read, scrubbed, deduplicated and sampled, then
answered by a candidate and compared with a baseline or with the logged answers."""
