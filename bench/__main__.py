"""Run every benchmark module (bench/bench_*.py) or the ones named: python -m bench [name ...]."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def available() -> list[str]:
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules(bench.__path__)
                  if m.name.startswith("bench_"))


def main(names: list[str]) -> int:
    chosen = names or available()
    unknown = sorted(set(chosen) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    for name in chosen:
        started = time.monotonic()
        print(f"\n=== bench {name} ===", flush=True)
        importlib.import_module(f"bench.bench_{name}").run()
        print(f"=== bench {name}: {time.monotonic() - started:.1f}s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
