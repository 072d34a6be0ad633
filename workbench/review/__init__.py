"""Human review of eval runs: blind labels given by people, and how far they agree with each other and the judge."""
