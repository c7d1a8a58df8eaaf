"""Decisions: statistics, A/B tests, latency and accuracy verdicts, change points, the gate."""
