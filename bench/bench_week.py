"""A simulated week of the daily retraining loop (issue 22 items 7 and 8), and what a day costs.

    make bench BENCH=week                                   # 7 days, local[2]; GLMIX_BENCH_ROWS: training rows a day
    GLMIX_BENCH_MASTERS=yarn make bench BENCH=week          # on the dev cluster: data, registry and output on HDFS

Seven days of one MovieLens-shaped world, each day's training and validation rows in
``ROOT/{train,validation}/daily/2026/11/0D/``; day 5's most frequent feature drifts (its values
tripled and shifted) and day 6's training labels are shuffled (the label rate unchanged: only a
model can tell). Each day runs the scheduled flow of one config as `glmix flow run --date` would:
it waits for the day's ``_SUCCESS``, the data gate compares the day with the production version's
training day, a model warm-started from production (``retrain``) trains on the day's rows, the
model gate scores it and production on the day's validation rows, registration. The loop must
promote days 1-4 and 7, stop day 5 at the data gate and day 6 at the model gate, and keep
``production`` at the last good version throughout; the bench fails otherwise
(``tests/test_week.py`` runs the same week, smaller, and checks each day's reports).

What a day costs: day 7's incremental run (one day's rows, warm start) against a full retrain of
the same model on all seven days from scratch, same machine, same flow, both validated on day 7.
"""

from __future__ import annotations

import io
import json
import os
import random
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from bench.dev_cluster import running_cluster
from bench.report import print_table
from bench.sizes import size
from glmix.data.synthetic import generate, movielens_spec
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.io.storage import join, qualified, storage_for
from glmix.registry import ModelRegistry

DAYS = 7
DRIFT_DAY, BROKEN_DAY = 5, 6
EXPECTED = {1: "promoted", 2: "promoted", 3: "promoted", 4: "promoted", 5: "data gate", 6: "model gate", 7: "promoted"}
DRIFTED = ("decade", "1990s")
MODEL = "week"


def day(n: int) -> str:
    return f"2026-11-{n:02d}"


@dataclass
class Day:
    """One day of the loop as an operator would look at it the morning after."""

    n: int
    outcome: str                      # promoted | data gate | model gate | failed at ...
    seconds: float
    data_gate: dict[str, Any]         # OUTPUT/data-gate/data-gate.json
    data_gate_page: str               # OUTPUT/data-gate/index.html
    gate: dict[str, Any] | None       # OUTPUT/gate/gate.json (None: the day stopped before the model gate)
    gate_page: str
    production: int | None            # the registry's production version after the day
    auc: float | None                 # the day's best validation AUC (None: nothing trained)
    iterations: int | None            # the fixed effect's L-BFGS iterations
    error: str                        # the failed stage's one-line error


def write_week(world: Path, root: str, rows_per_day: int) -> None:
    """Generate the world locally (``world``) and write each day's Avro file and ``_SUCCESS`` under
    ``root`` (local or HDFS) as an upstream pipeline would."""
    spec = movielens_spec(rows=int(rows_per_day * DAYS / 0.6), seed=11).model_copy(update={"validation_fraction": 0.4})
    generate(spec, str(world))
    rng = random.Random(5)
    for split in ("train", "validation"):
        records: list[Any] = []
        for part in sorted((world / split).glob("*.avro")):
            with open(part, "rb") as stream:
                reader = fastavro.reader(stream)
                schema = reader.writer_schema
                records += list(reader)
        share = len(records) // DAYS
        for n in range(1, DAYS + 1):
            rows = records[(n - 1) * share:n * share]
            if split == "train" and n == DRIFT_DAY:
                for r in rows:
                    r["movieFeatures"] = [dict(f, value=f["value"] * 3 + 1) if (f["name"], f["term"]) == DRIFTED else f
                                          for f in r["movieFeatures"]]
            if split == "train" and n == BROKEN_DAY:
                labels = [r["label"] for r in rows]
                rng.shuffle(labels)
                rows = [dict(r, label=label) for r, label in zip(rows, labels, strict=True)]
            directory = join(root, split, "daily", day(n).replace("-", "/"))
            buffer = io.BytesIO()
            fastavro.writer(buffer, schema, rows)
            storage_for(directory).write_bytes(join(directory, "part-00000.avro"), buffer.getvalue())
            storage_for(directory).write_bytes(join(directory, "_SUCCESS"), b"")


def week_config(root: str, days: int, master: str, registry: bool = True) -> GameConfig:
    """The daily flow (scheduled at 02:00, the input day waited for up to a minute); without
    ``registry``, the same model trained from scratch on ``days`` days, registered nowhere."""
    yarn = master == "yarn"
    config: dict[str, Any] = {
        "name": "week", "task": "logistic",
        "input": {"train": join(root, "train"), "validation": join(root, "validation"),
                  "train_dates": {"last_days": days}, "validation_dates": {"last_days": 1}},
        "output": join(root, "out" if registry else f"full-{days}"),
        "feature_shards": [{"name": "global", "bags": ["features", "userFeatures", "movieFeatures"]},
                           {"name": "movie", "bags": ["movieFeatures"]}],
        "coordinates": {"global": {"type": "fixed", "shard": "global", "l2": 1.0, "compute": "scipy"},
                        "per-user": {"type": "random", "shard": "movie", "entity_field": "userId", "l2": 75.0,
                                     "intercept_l2": 0.6}},
        "update_sequence": ["global", "per-user"], "evaluators": ["AUC"],
        "resources": {"spark": {"master": master, "partitions": 2, "executors": 1, "executor_memory": "1g"},
                      "launcher": {"backend": "yarn" if yarn else "local", "workers": 1, "memory": 2048}},
        "flow": {"retries": 0, "retry_backoff_ms": 0}}
    if registry:
        config.update({"schedule": {"cron": "0 0 2 ? * *", "input_wait_minutes": 1, "poll_seconds": 5},
                       "registry": {"root": join(root, "registry"), "model": MODEL, "tolerance": 0.03},
                       "data_gate": {"features": 100}, "retrain": {"warm_start": True}})
    return GameConfig.from_dict(config)


def run_day(project: Path, n: int) -> tuple[str, float, dict[str, str]]:
    """Run the instance that trains on day ``n`` (it runs the morning after: ``last_days`` counts
    back from the run date, which it excludes); its outcome, seconds and the failed stages' errors."""
    started = time.monotonic()
    results = LocalRunner(project, {"glmix.run.date": day(n + 1)}).run()
    seconds = time.monotonic() - started
    failed = {r.name: r.error for r in results if r.status == "failed"}
    outcome = ("promoted" if not failed else "data gate" if "data-gate" in failed else
               "model gate" if "gate" in failed else f"failed at {', '.join(failed)}")
    return outcome, seconds, failed


def _read(path: str) -> str:
    return storage_for(path).read_bytes(path).decode() if storage_for(path).exists(path) else ""


def global_iterations(output: str) -> int:
    """The fixed effect's L-BFGS iterations in the run (a warm start from production needs few)."""
    return int(json.loads(_read(join(output, "run-0", "pass-0", "global", "_report.json")))["iterations"])


def auc_of(output: str) -> float:
    summary = json.loads(_read(join(output, "summary.json")))
    return float(summary["steps"][summary["best"]]["metrics"]["AUC"])


def simulate_week(root: str, work: Path, rows_per_day: int, master: str) -> tuple[list[Day], Path]:
    """Write the week under ``root``, run its seven days; each day's record, and the flow's project."""
    write_week(work / "world", root, rows_per_day)
    registry = ModelRegistry(join(root, "registry"))
    output = join(root, "out")
    project = build_project(week_config(root, days=1, master=master), work / "project")
    days = []
    for n in range(1, DAYS + 1):
        outcome, seconds, failed = run_day(project, n)
        trained = "data-gate" not in failed and not outcome.startswith("failed")
        gate = _read(join(output, "gate", "gate.json")) if trained else ""
        days.append(Day(n, outcome, seconds, json.loads(_read(join(output, "data-gate", "data-gate.json")) or "{}"),
                        _read(join(output, "data-gate", "index.html")), json.loads(gate) if gate else None,
                        _read(join(output, "gate", "index.html")) if trained else "", registry.production(MODEL),
                        auc_of(output) if trained else None, global_iterations(output) if trained else None,
                        next(iter(failed.values()), "")))
    return days, project


def why_stopped(d: Day) -> str:
    """The gate's own verdict (the runner only knows a stage's exit code), or the first error."""
    return str(d.gate["verdict"] if d.outcome == "model gate" and d.gate else d.error)[:90]


def week_problems(days: list[Day], registry: ModelRegistry) -> list[str]:
    """How the loop strayed from what it must do (empty: it did not)."""
    problems = []
    outcomes = {d.n: d.outcome for d in days}
    if outcomes != EXPECTED:
        problems.append(f"the week went {outcomes}; expected {EXPECTED}")
    by_date = {v.metadata["inputs"]["run_date"]: v.number for v in registry.versions(MODEL)}
    last_good = {n: max(k for k in range(1, n + 1) if EXPECTED[k] == "promoted") for n in EXPECTED}
    expected = [by_date.get(day(last_good[n] + 1)) for n in EXPECTED]
    if [d.production for d in days] != expected:
        problems.append(f"production went {[d.production for d in days]}; expected the last good version each day "
                        f"{expected}")
    return problems


def bench_week(master: str, rows_per_day: int) -> None:
    with tempfile.TemporaryDirectory(prefix="glmix-bench-week-") as tmp:
        work = Path(tmp)
        root = qualified("hdfs:///bench/week") if master == "yarn" else str(work / "data")
        storage_for(root).delete(root)
        registry = ModelRegistry(join(root, "registry"))
        days, _ = simulate_week(root, work, rows_per_day, master)
        full_project = build_project(week_config(root, days=DAYS, master=master, registry=False), work / "full-project")
        full_outcome, full_seconds, _ = run_day(full_project, DAYS)
        full = join(root, f"full-{DAYS}")
        versions = [(v.number, v.state, v.metadata["inputs"]["run_date"]) for v in registry.versions(MODEL)]
        print_table(f"a simulated week on {master}: {rows_per_day:,} training rows a day, day {DRIFT_DAY}'s feature "
                    f"'{' '.join(DRIFTED)}' drifts, day {BROKEN_DAY}'s labels shuffled",
                    ["day", "outcome", "data gate", "validation AUC", "global iterations", "production after",
                     "seconds", "why stopped"],
                    [(day(d.n), d.outcome, "passed" if d.data_gate["passed"] else "failed",
                      f"{d.auc:.4f}" if d.auc is not None else "-", d.iterations if d.iterations is not None else "-",
                      d.production, d.seconds, why_stopped(d)) for d in days])
        last = days[-1]
        costs = {"incremental": (last.seconds, last.iterations, last.auc)}
        if full_outcome == "promoted":
            costs["full retrain"] = (full_seconds, global_iterations(full), auc_of(full))
        print_table("what a day costs (day 7, same flow, validated on day 7's rows)",
                    ["run", "training days", "warm start", "seconds", "global iterations", "validation AUC"],
                    [("incremental (the loop's day)", 1, "production", *costs["incremental"]),
                     ("full retrain", DAYS, "none", *costs.get("full retrain", (full_outcome, "", ""))),
                     ("full / incremental", "", "", full_seconds / last.seconds, "", "")])
        print_table("registry versions", ["version", "state", "run date"], versions)
        problems = week_problems(days, registry) + ([] if full_outcome == "promoted" else
                                                    [f"the full retrain went {full_outcome}"])
        if problems:
            raise SystemExit("; ".join(problems))
        if master == "yarn":
            storage_for(root).delete(root)


def run() -> None:
    rows_per_day = size(20_000, 3_000, "GLMIX_BENCH_ROWS")
    for master in os.environ.get("GLMIX_BENCH_MASTERS", "local[2]").split(","):
        with running_cluster() if master == "yarn" else nullcontext():
            bench_week(master, rows_per_day)
