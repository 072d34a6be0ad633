"""Chat formats: what a chat template says about turns (ChatFormat), and rendering templates as the runtimes do."""
