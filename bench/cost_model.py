"""A cost model of the GAME flow, fitted to `bench flow_scale`'s measurements and extrapolated.

Per stage kind, time(n) = overhead + work per row x n, fitted on two sizes. Checked by fitting the
two smaller sizes of a run and predicting the largest (goal: within 25%). Then refitted on the two
largest and extrapolated to a cluster (`Cluster`) and to 1B / 10B rows:

* a Spark stage: its overhead, plus its task time per row (core-seconds, measured) spread over every
  core of the cluster, plus the bytes it shuffles per row over the nodes' network links (on one
  machine the shuffle never crossed a network, so this term is added, not measured);
* the fixed effect: one launcher worker per node, each holding rows / nodes; its load time per row
  and its time per gradient evaluation per non-zero (one core per worker: scipy's sparse products
  are single-threaded) are measured, the evaluations count (independent of the rows) is the
  measured one, and each evaluation all-reduces the gradient (a ring: 2 x its bytes per node).
  The check predicts it the same way from the middle run's rates and evaluations: a line through
  two sizes misreads it, as a small run's solve can take many more evaluations (174 at 100k rows,
  22 at 1M on 2026-12-04).

    python -m bench.cost_model bench-flow.json        # the JSON that GLMIX_BENCH_JSON made bench flow_scale write
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import print_table

SPARK_KINDS = ("index", "prepare", "partition", "per-user", "per-item", "score")   # bench.bench_flow_scale.kind
FIXED = "global-train"


@dataclass(frozen=True)
class Cluster:
    nodes: int = 100
    cores_per_node: int = 16          # for executors; YARN and the OS keep the rest
    memory_gb_per_node: int = 64
    network_gb_per_s: float = 1.25    # 10 Gbit/s per node
    features: int = 100_000           # the fixed effect's dimension (gradient all-reduced per evaluation)

    def describe(self) -> str:
        return (f"{self.nodes} nodes x {self.cores_per_node} cores, {self.memory_gb_per_node} GB, "
                f"{self.network_gb_per_s * 8:.0f} Gbit/s each")


def linear_fit(small: tuple[float, float], large: tuple[float, float]) -> tuple[float, float]:
    """(overhead, per row) through two (rows, seconds) points; overhead kept >= 0."""
    (n1, t1), (n2, t2) = small, large
    per_row = (t2 - t1) / (n2 - n1)
    if per_row <= 0:
        return t2, 0.0
    overhead = max(0.0, t1 - per_row * n1)
    return overhead, (t2 - overhead) / n2 if overhead == 0.0 else per_row


def stage_seconds(run: dict[str, Any], stage: str) -> float:
    return float(run["stages"].get(stage, {}).get("seconds", 0.0))


@dataclass(frozen=True)
class FixedEffectRates:
    """The fixed effect's costs in one run, over all its passes: the launcher's overhead, loading per
    row, a gradient evaluation per non-zero, the evaluations, the non-zeros per row."""

    overhead: float
    load_per_row: float
    per_evaluation_nnz: float
    evaluations: int
    nnz_per_row: float

    @classmethod
    def of(cls, run: dict[str, Any]) -> FixedEffectRates:
        reports = run["fixed_effect"]
        return cls(overhead=stage_seconds(run, FIXED) - sum(r["load_seconds"] + r["train_seconds"] for r in reports),
                   load_per_row=sum(r["load_seconds"] for r in reports) / run["rows"],
                   per_evaluation_nnz=sum(r["train_seconds"] for r in reports) / sum(
                       r["evaluations"] * r["nnz_this_worker"] for r in reports),
                   evaluations=sum(r["evaluations"] for r in reports),
                   nnz_per_row=reports[0]["nnz_this_worker"] / run["rows"])

    def work(self, rows_per_worker: float) -> float:
        """Loading and solving, in seconds, for a worker holding ``rows_per_worker`` rows."""
        return (self.load_per_row + self.per_evaluation_nnz * self.nnz_per_row * self.evaluations) * rows_per_worker


def check(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows of the check table: each stage kind predicted at the largest size from the two smallest."""
    runs = sorted(runs, key=lambda r: r["rows"])
    small, middle, large = runs[0], runs[-2], runs[-1]
    table = []
    for stage in SPARK_KINDS:
        overhead, per_row = linear_fit((small["rows"], stage_seconds(small, stage)),
                                       (middle["rows"], stage_seconds(middle, stage)))
        predicted, measured = overhead + per_row * large["rows"], stage_seconds(large, stage)
        table.append([stage, overhead, per_row * 1e6, predicted, measured, (predicted - measured) / measured])
    rates = FixedEffectRates.of(middle)        # one worker a pass, as on local[N]
    predicted, measured = rates.overhead + rates.work(large["rows"]), stage_seconds(large, FIXED)
    table.append([FIXED, rates.overhead, rates.work(1e6), predicted, measured, (predicted - measured) / measured])
    predicted_total = sum(row[3] for row in table)
    measured_total = sum(row[4] for row in table)
    table.append(["all of these", "-", "-", predicted_total, measured_total,
                  (predicted_total - measured_total) / measured_total])
    return table


def extrapolate(runs: list[dict[str, Any]], rows: int, cluster: Cluster) -> list[list[Any]]:
    """Seconds per stage kind of one flow at ``rows`` rows on ``cluster`` (same passes, same features per row)."""
    runs = sorted(runs, key=lambda r: r["rows"])
    middle, large = runs[-2], runs[-1]
    cores = cluster.nodes * cluster.cores_per_node
    table = []
    for stage in SPARK_KINDS:
        overhead, _ = linear_fit((middle["rows"], stage_seconds(middle, stage)),
                                 (large["rows"], stage_seconds(large, stage)))
        measured = large["stages"].get(stage, {})
        core_seconds_per_row = measured.get("core_seconds", 0.0) / large["rows"]
        shuffle_per_row = measured.get("shuffle_bytes", 0.0) / large["rows"]
        compute = core_seconds_per_row * rows / cores
        network = shuffle_per_row * rows / (cluster.nodes * cluster.network_gb_per_s * 1e9)
        table.append([stage, overhead, compute, network, overhead + compute + network])
    rates = FixedEffectRates.of(large)
    all_reduce = rates.evaluations * 2 * 8 * cluster.features / (cluster.network_gb_per_s * 1e9)
    work = rates.work(rows / cluster.nodes)
    table.append([FIXED, rates.overhead, work, all_reduce, rates.overhead + work + all_reduce])
    return table


def fixed_effect_memory_gb(runs: list[dict[str, Any]], rows: int, cluster: Cluster) -> float:
    """A launcher worker's peak memory (GB) holding rows / nodes rows: the measured peaks' line through
    the two largest sizes (a Python process's base plus bytes per row)."""
    middle, large = sorted(runs, key=lambda r: r["rows"])[-2:]
    base, per_row = linear_fit(*((r["rows"], max(f["peak_rss_mb_this_worker"] for f in r["fixed_effect"]))
                                 for r in (middle, large)))
    return (base + per_row * rows / cluster.nodes) / 1024


def print_model(runs: list[dict[str, Any]], cluster: Cluster = Cluster()) -> None:
    master = runs[0]["master"]
    sizes = sorted(r["rows"] for r in runs)
    if len(sizes) >= 3:
        print_table(f"cost model check on {master}: fitted on {sizes[0]:,} and {sizes[-2]:,} rows, predicting "
                    f"{sizes[-1]:,} (goal: within 25%)",
                    ["stage kind", "overhead s", "s per 1M rows", "predicted s", "measured s", "error"],
                    check(runs))
    if len(sizes) < 2:
        return
    for rows in (1_000_000_000, 10_000_000_000):
        table = extrapolate(runs, rows, cluster)
        total = sum(row[-1] for row in table)
        table.append(["whole flow (one stage at a time)", "-", "-", "-", total])
        print_table(f"extrapolated: {rows:,} rows on {cluster.describe()} (fitted on {sizes[-2]:,} and "
                    f"{sizes[-1]:,} rows on {master}); fixed-effect worker ~{fixed_effect_memory_gb(runs, rows, cluster):.0f} GB",
                    ["stage kind", "overhead s", "compute s", "network s", "seconds"], table)


def main(argv: list[str]) -> int:
    measured = json.loads(Path(argv[0]).read_text())
    for master in dict.fromkeys(r["master"] for r in measured):
        print_model([r for r in measured if r["master"] == master])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
