"""Benchmark sizes: the measurement's, or a smoke size that runs in seconds.

`make test` runs every benchmark at its smoke size (tests/test_benchmarks.py), so a benchmark that
breaks fails CI instead of rotting until someone measures again; a smoke run's numbers mean
nothing. ``GLMIX_BENCH_SMOKE=1`` selects the smoke sizes; environment variables a benchmark
documents (e.g. ``GLMIX_BENCH_ROWS``) still win over both.
"""

from __future__ import annotations

import os

SMOKE = os.environ.get("GLMIX_BENCH_SMOKE") == "1"


def size(full: int, smoke: int, variable: str | None = None) -> int:
    """``full`` or, in a smoke run, ``smoke``; ``variable`` (an environment variable) overrides both."""
    if variable and os.environ.get(variable):
        return int(os.environ[variable])
    return smoke if SMOKE else full


def sizes(full: str, smoke: str, variable: str) -> list[int]:
    """A comma-separated list of sizes, chosen like ``size``."""
    return [int(s) for s in os.environ.get(variable, smoke if SMOKE else full).split(",")]
