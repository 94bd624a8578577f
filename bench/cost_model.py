"""A cost model of the GAME flow, fitted to `bench flow_scale`'s measurements and extrapolated.

Per Spark stage kind, its task time (core-seconds) = overhead + work per row x n, fitted on two sizes,
and its wall time = the driver's own time (wall - task time / the run's cores) + task time / cores.
The fixed effect (see `FixedEffectFit`): the launcher's time around its workers as measured, the
workers' time but the solve as overhead + per row, the solve as time per gradient evaluation per
non-zero x the solver's evaluations. Runs repeated at a size count by
their fastest (`fastest`). Checked by fitting the two smaller sizes and predicting the largest (goal:
within 25% per stage kind). A line through each stage's wall time instead misread the smaller sizes'
idle cores and task starts as work per row: on three runs of 2026-12-04, it predicted 10M within 25%
for 6, 6 and 4 of the 7 kinds; the task-time fit for all 6 Spark kinds in each.

Then extrapolated to a cluster (`Cluster`) and to 1B / 10B rows, fitted on the two largest sizes:

* a Spark stage: the driver's time, plus its task time spread over every core of the cluster, plus
  the bytes it shuffles per row over the nodes' network links (on one machine the shuffle never
  crossed a network, so this term is added, not measured);
* the fixed effect: one launcher worker per node, each holding rows / nodes (one core per worker:
  scipy's sparse products are single-threaded), the largest run's evaluations, each all-reducing the
  gradient (a ring: 2 x its bytes per node).

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


def core_seconds(run: dict[str, Any], stage: str) -> float:
    return float(run["stages"].get(stage, {}).get("core_seconds", 0.0))


def cores(run: dict[str, Any]) -> int:
    """The cores the run's Spark executors had (runs measured before this was recorded had 2)."""
    return int(run.get("cores", 2))


@dataclass(frozen=True)
class SparkStageFit:
    """A Spark stage kind's costs fitted on two runs: the driver's own seconds (the larger run's wall
    time not covered by its task time spread over its cores), task core-seconds overhead and per row."""

    driver: float
    task_overhead: float
    task_per_row: float

    @classmethod
    def of(cls, stage: str, smaller: dict[str, Any], larger: dict[str, Any]) -> SparkStageFit:
        overhead, per_row = linear_fit((smaller["rows"], core_seconds(smaller, stage)),
                                       (larger["rows"], core_seconds(larger, stage)))
        driver = max(0.0, stage_seconds(larger, stage) - core_seconds(larger, stage) / cores(larger))
        return cls(driver, overhead, per_row)

    def seconds(self, rows: float, run_cores: int) -> float:
        return self.driver + (self.task_overhead + self.task_per_row * rows) / run_cores


def solve_seconds(run: dict[str, Any]) -> float:
    return float(sum(r["train_seconds"] for r in run["fixed_effect"]))


def evaluations(run: dict[str, Any]) -> int:
    """The fixed effect's gradient evaluations over all passes: the solver's, not the machine's (236 at
    100k rows, 40 at 1M, 30 at 10M on 2026-12-04), so a prediction takes them as given."""
    return sum(r["evaluations"] for r in run["fixed_effect"])


def worker_seconds(run: dict[str, Any]) -> float:
    """The fixed effect's workers' own time over all its passes (their reports' ``wall_seconds``: loading
    to scores written); runs measured before it was recorded count the whole stage as the workers'."""
    reports = run["fixed_effect"]
    if all("wall_seconds" in r for r in reports):
        return float(sum(r["wall_seconds"] for r in reports))
    return stage_seconds(run, FIXED)


@dataclass(frozen=True)
class FixedEffectFit:
    """The fixed effect's costs over all its passes, fitted on two runs: what the launcher adds around
    the workers (application, container, interpreter start: the stage less the workers' own time) as
    the larger run's; the workers' time but the solve (loading the rows and their offsets, the
    validation pass, writing scores) as overhead + seconds per row; the solve as seconds per gradient
    evaluation per non-zero (the larger run's) x evaluations x non-zeros. A line through the whole
    stage's time would read a small run's many evaluations as overhead, and on YARN the launcher's
    run-to-run spread (+-3 s of ~10 s a pass) hides the loading's growth from 100k to 1M rows."""

    launcher: float
    worker_overhead: float
    other_per_row: float
    per_evaluation_nnz: float
    nnz_per_row: float

    @classmethod
    def of(cls, smaller: dict[str, Any], larger: dict[str, Any]) -> FixedEffectFit:
        worker_overhead, per_row = linear_fit(*((r["rows"], worker_seconds(r) - solve_seconds(r)) for r in (smaller, larger)))
        reports = larger["fixed_effect"]
        return cls(max(0.0, stage_seconds(larger, FIXED) - worker_seconds(larger)), worker_overhead, per_row,
                   per_evaluation_nnz=solve_seconds(larger) / sum(r["evaluations"] * r["nnz_this_worker"] for r in reports),
                   nnz_per_row=reports[0]["nnz_this_worker"] / larger["rows"])

    @property
    def overhead(self) -> float:
        return self.launcher + self.worker_overhead

    def work(self, rows_per_worker: float, evaluations: int) -> float:
        """Seconds beyond the overhead for a worker holding ``rows_per_worker`` rows."""
        return (self.other_per_row + self.per_evaluation_nnz * self.nnz_per_row * evaluations) * rows_per_worker


def fastest(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per size, smallest first: of runs repeated at a size, each stage kind's fastest (this
    machine's noise only adds time: first touches of fresh memory took 0.06 to 1.9 s per 800 MB from one
    process to the next on 2026-12-04), the fixed effect's reports with its fastest stage."""
    by_rows: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_rows.setdefault(run["rows"], []).append(run)
    merged = []
    for _, same in sorted(by_rows.items()):
        kinds = dict.fromkeys(kind for run in same for kind in run["stages"])
        stages = {kind: min((run["stages"][kind] for run in same if kind in run["stages"]), key=lambda s: s["seconds"])
                  for kind in kinds}
        quickest_fixed: dict[str, Any] = min(same, key=lambda run: stage_seconds(run, FIXED))
        merged.append({**quickest_fixed, "stages": stages, "repeats": len(same)})
    return merged


def check(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows of the check table: each stage kind predicted at the largest size from the two smallest."""
    best = fastest(runs)
    small, middle, large = best[0], best[-2], best[-1]
    table: list[list[Any]] = []
    for stage in SPARK_KINDS:
        fit = SparkStageFit.of(stage, small, middle)
        predicted, measured = fit.seconds(large["rows"], cores(large)), stage_seconds(large, stage)
        table.append([stage, fit.driver, fit.task_overhead, fit.task_per_row * 1e6, predicted, measured,
                      (predicted - measured) / measured])
    fixed = FixedEffectFit.of(small, middle)             # one worker a pass, as on local[N]
    predicted = fixed.overhead + fixed.work(large["rows"], evaluations(large))
    measured = stage_seconds(large, FIXED)
    table.append([FIXED, fixed.overhead, "-", fixed.work(1e6, evaluations(large)), predicted, measured,
                  (predicted - measured) / measured])
    predicted_total = sum(row[-3] for row in table)
    measured_total = sum(row[-2] for row in table)
    table.append(["all of these", "-", "-", "-", predicted_total, measured_total,
                  (predicted_total - measured_total) / measured_total])
    return table


def extrapolate(runs: list[dict[str, Any]], rows: int, cluster: Cluster) -> list[list[Any]]:
    """Seconds per stage kind of one flow at ``rows`` rows on ``cluster`` (same passes, same features
    per row, the largest run's evaluations)."""
    middle, large = fastest(runs)[-2:]
    cores_ = cluster.nodes * cluster.cores_per_node
    table = []
    for stage in SPARK_KINDS:
        fit = SparkStageFit.of(stage, middle, large)
        overhead = fit.driver + fit.task_overhead / cores_
        compute = fit.task_per_row * rows / cores_
        network = large["stages"].get(stage, {}).get("shuffle_bytes", 0.0) / large["rows"] * rows / (
            cluster.nodes * cluster.network_gb_per_s * 1e9)
        table.append([stage, overhead, compute, network, overhead + compute + network])
    fixed = FixedEffectFit.of(middle, large)
    all_reduce = evaluations(large) * 2 * 8 * cluster.features / (cluster.network_gb_per_s * 1e9)
    work = fixed.work(rows / cluster.nodes, evaluations(large))
    table.append([FIXED, fixed.overhead, work, all_reduce, fixed.overhead + work + all_reduce])
    return table


def fixed_effect_memory_gb(runs: list[dict[str, Any]], rows: int, cluster: Cluster) -> float:
    """A launcher worker's peak memory (GB) holding rows / nodes rows: the measured peaks' line through
    the two largest sizes (a Python process's base plus bytes per row)."""
    middle, large = fastest(runs)[-2:]
    base, per_row = linear_fit(*((r["rows"], max(f["peak_rss_mb_this_worker"] for f in r["fixed_effect"]))
                                 for r in (middle, large)))
    return (base + per_row * rows / cluster.nodes) / 1024


def print_model(runs: list[dict[str, Any]], cluster: Cluster = Cluster()) -> None:
    master = runs[0]["master"]
    best = fastest(runs)
    sizes = [r["rows"] for r in best]
    repeats = "" if all(r["repeats"] == 1 for r in best) else \
        " (of repeated runs, each stage's fastest: " + ", ".join(f"{r['repeats']} x {r['rows']:,}" for r in best) + ")"
    if len(sizes) >= 3:
        print_table(f"cost model check on {master}: fitted on {sizes[0]:,} and {sizes[-2]:,} rows, predicting "
                    f"{sizes[-1]:,} (goal: within 25%; the fixed effect's evaluations are the predicted run's){repeats}",
                    ["stage kind", "driver / launcher s", "task overhead core-s", "core-s per 1M rows", "predicted s",
                     "measured s", "error"],
                    [[*row[:-1], f"{row[-1]:+.0%}"] for row in check(runs)])
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
