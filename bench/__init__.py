"""Benchmarks: run with `make bench-realtime`; results go to BENCHMARKS.md."""
