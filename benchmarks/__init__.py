"""Benchmarks that measure trtci's preparation on realistic networks; run as `python -m benchmarks.<name>`."""
