"""Benchmarks that experiments/bench.py runs, kept beside the binary's flags as a library."""
