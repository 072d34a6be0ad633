"""Evaluation: lm-eval regression (harness), task suites with scorers, and the runner that records both."""
