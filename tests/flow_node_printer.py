"""A stand-in flow stage for the runner tests: prints its name many times, slowly, in-process
(its main takes ``out`` and ``cwd``, so the local runner calls it in its own thread)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO


def main(argv: list[str], out: TextIO | None = None, cwd: Path | None = None) -> int:
    for i in range(50):
        print(f"{argv[0]} {i}", file=out or sys.stdout, flush=True)
        print(f"{argv[0]} err {i}", file=out or sys.stderr, flush=True)
        time.sleep(0.002)
    return 0
