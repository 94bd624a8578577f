"""Printing benchmark results as tables with ratios against the peer; timing a call or a flow."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_format(v) for v in row))
    Console(width=140).print(table)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@dataclass
class FlowRun:
    seconds: float
    results: list[Any]          # the runner's NodeResults
    summary: dict[str, Any]     # the flow's summary.json


def run_flow(project: Path, output: Path) -> FlowRun:
    """Run a built GAME project on this machine, timed; a failed stage ends the benchmark."""
    from glmix.flow.runner import LocalRunner

    started = time.monotonic()
    results = LocalRunner(project).run()
    seconds = time.monotonic() - started
    failed = [r for r in results if r.status != "succeeded"]
    if failed:
        raise SystemExit(f"{project.name}: stage {failed[0].name} failed: {failed[0].error}")
    return FlowRun(seconds, results, json.loads((output / "summary.json").read_text()))


def node_kind(node: str) -> str:
    """A flow node's kind: p0-global-train -> train; p0-global -> score (a fixed effect's step);
    p0-per-user -> train+score (a random effect's step); prepare, partition... as named."""
    step = re.match(r"(r\d+-)?p\d+-(.+)$", node)
    if not step:
        return node.split("-")[0]
    return "train" if step[2].endswith("-train") else "train+score" if step[2].startswith("per-") else "score"
