"""A stand-in flow stage for the runner tests: prints its name many times, slowly, in-process."""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    for i in range(50):
        print(f"{argv[0]} {i}", flush=True)
        print(f"{argv[0]} err {i}", file=sys.stderr, flush=True)
        time.sleep(0.002)
    return 0
