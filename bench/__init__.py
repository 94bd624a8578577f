"""Benchmarks against the peers a user would otherwise pick; `make bench` runs them all."""
