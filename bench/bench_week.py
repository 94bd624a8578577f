"""A simulated week of the daily retraining loop (issue 22 items 7 and 8), and what a day costs.

    make bench BENCH=week                       # 7 days, local[2]; GLMIX_BENCH_ROWS: training rows a day

Seven days of one MovieLens-shaped world, each day's training and validation rows in
``ROOT/{train,validation}/daily/2026/11/0D/``; day 5's most frequent feature drifts (its values
tripled and shifted) and day 6's training labels are shuffled (the label rate unchanged: only a
model can tell). Each day runs the flow of one config as `glmix flow run --date` would: the data
gate against the production version's training day, a model warm-started from production
(``retrain``) on the day's rows, the model gate on the day's validation rows, registration. The
loop must promote days 1-4 and 7, stop day 5 at the data gate and day 6 at the model gate, and
keep ``production`` at the last good version throughout; the bench fails otherwise.

What a day costs: day 7's incremental run (one day's rows, warm start) against a full retrain of
the same model on all seven days from scratch, same machine, same flow, both validated on day 7.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import fastavro

from bench.report import print_table
from bench.sizes import size
from glmix.data.synthetic import generate, movielens_spec
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.registry import ModelRegistry

DAYS = 7
DRIFT_DAY, BROKEN_DAY = 5, 6
EXPECTED = {1: "promoted", 2: "promoted", 3: "promoted", 4: "promoted", 5: "data gate", 6: "model gate", 7: "promoted"}


def day(n: int) -> str:
    return f"2026-11-{n:02d}"


def write_week(root: Path, rows_per_day: int) -> str:
    """The days' Avro directories; returns the drifted feature's name and term."""
    spec = movielens_spec(rows=int(rows_per_day * DAYS / 0.6), seed=11).model_copy(update={"validation_fraction": 0.4})
    generate(spec, str(root / "world"))
    drifted = ("decade", "1990s")
    rng = random.Random(5)
    for split in ("train", "validation"):
        records: list[Any] = []
        for part in sorted((root / "world" / split).glob("*.avro")):
            with open(part, "rb") as stream:
                reader = fastavro.reader(stream)
                schema = reader.writer_schema
                records += list(reader)
        share = len(records) // DAYS
        for n in range(1, DAYS + 1):
            rows = records[(n - 1) * share:n * share]
            if split == "train" and n == DRIFT_DAY:
                for r in rows:
                    r["movieFeatures"] = [dict(f, value=f["value"] * 3 + 1) if (f["name"], f["term"]) == drifted else f
                                          for f in r["movieFeatures"]]
            if split == "train" and n == BROKEN_DAY:
                labels = [r["label"] for r in rows]
                rng.shuffle(labels)
                rows = [dict(r, label=label) for r, label in zip(rows, labels, strict=True)]
            directory = root / split / "daily" / day(n).replace("-", "/")
            directory.mkdir(parents=True)
            with open(directory / "part-00000.avro", "wb") as out:
                fastavro.writer(out, schema, rows)
            (directory / "_SUCCESS").touch()
    return " ".join(drifted)


def week_config(root: Path, days: int, registry: bool = True) -> GameConfig:
    config: dict[str, Any] = {
        "name": "week", "task": "logistic",
        "input": {"train": str(root / "train"), "validation": str(root / "validation"),
                  "train_dates": {"last_days": days}, "validation_dates": {"last_days": 1}},
        "output": str(root / ("out" if registry else f"full-{days}")),
        "feature_shards": [{"name": "global", "bags": ["features", "userFeatures", "movieFeatures"]},
                           {"name": "movie", "bags": ["movieFeatures"]}],
        "coordinates": {"global": {"type": "fixed", "shard": "global", "l2": 1.0, "compute": "scipy"},
                        "per-user": {"type": "random", "shard": "movie", "entity_field": "userId", "l2": 75.0,
                                     "intercept_l2": 0.6}},
        "update_sequence": ["global", "per-user"], "evaluators": ["AUC"],
        "resources": {"spark": {"master": "local[2]", "partitions": 2},
                      "launcher": {"backend": "local", "workers": 1, "memory": 2048}},
        "flow": {"retries": 0, "retry_backoff_ms": 0}}
    if registry:
        config.update({"registry": {"root": str(root / "registry"), "model": "week", "tolerance": 0.03},
                       "data_gate": {"features": 100}, "retrain": {"warm_start": True}})
    return GameConfig.from_dict(config)


def run_day(project: Path, n: int) -> tuple[str, float, dict[str, str]]:
    """Run the instance that trains on day ``n`` (it runs the morning after: ``last_days`` counts
    back from the run date, which it excludes); its outcome, seconds and the failed stage's error."""
    started = time.monotonic()
    results = LocalRunner(project, {"glmix.run.date": day(n + 1)}).run()
    seconds = time.monotonic() - started
    failed = {r.name: r.error for r in results if r.status == "failed"}
    outcome = ("promoted" if not failed else "data gate" if "data-gate" in failed else
               "model gate" if "gate" in failed else f"failed at {', '.join(failed)}")
    return outcome, seconds, failed


def why_stopped(output: Path, failed: dict[str, str]) -> str:
    """The gate's own verdict (the runner only knows a stage's exit code), or the first error."""
    if "gate" in failed:
        return str(json.loads((output / "gate" / "gate.json").read_text())["verdict"])[:90]
    return next(iter(failed.values()), "")[:90]


def global_iterations(output: Path) -> int:
    """The fixed effect's L-BFGS iterations in the run (a warm start from production needs few)."""
    return int(json.loads((output / "run-0" / "pass-0" / "global" / "_report.json").read_text())["iterations"])


def auc_of(output: Path) -> float:
    summary = json.loads((output / "summary.json").read_text())
    return float(summary["steps"][summary["best"]]["metrics"]["AUC"])


def run() -> None:
    rows_per_day = size(20_000, 3_000, "GLMIX_BENCH_ROWS")
    with tempfile.TemporaryDirectory(prefix="glmix-bench-week-") as tmp:
        root = Path(tmp)
        drifted = write_week(root, rows_per_day)
        registry = ModelRegistry(str(root / "registry"))
        project = build_project(week_config(root, days=1), root / "project")
        rows, outcomes, production, costs = [], {}, [], {}
        for n in range(1, DAYS + 1):
            outcome, seconds, failed = run_day(project, n)
            outcomes[n] = outcome
            production.append(registry.production("week"))
            decision = json.loads((root / "out" / "data-gate" / "data-gate.json").read_text())
            trained = "data-gate" not in failed
            rows.append((day(n), outcome, "passed" if decision["passed"] else "failed",
                         f"{auc_of(root / 'out'):.4f}" if trained else "-",
                         global_iterations(root / "out") if trained else "-",
                         production[-1], seconds, why_stopped(root / "out", failed)))
            costs["incremental"] = (seconds, global_iterations(root / "out"), auc_of(root / "out"))
        full_project = build_project(week_config(root, days=DAYS, registry=False), root / "full-project")
        outcome, seconds, _ = run_day(full_project, DAYS)
        full = root / f"full-{DAYS}"
        costs["full retrain"] = (seconds, global_iterations(full), auc_of(full))
        versions = [(v.number, v.state, v.metadata["inputs"]["run_date"]) for v in registry.versions("week")]
    print_table(f"a simulated week: {rows_per_day:,} training rows a day, day {DRIFT_DAY}'s feature '{drifted}' "
                f"drifts, day {BROKEN_DAY}'s labels shuffled",
                ["day", "outcome", "data gate", "validation AUC", "global iterations", "production after", "seconds",
                 "why stopped"], rows)
    print_table("what a day costs (day 7, same flow, validated on day 7's rows)",
                ["run", "training days", "warm start", "seconds", "global iterations", "validation AUC"],
                [("incremental (the loop's day)", 1, "production", *costs["incremental"]),
                 ("full retrain", DAYS, "none", *costs["full retrain"]),
                 ("full / incremental", "", "", costs["full retrain"][0] / costs["incremental"][0], "", "")])
    print_table("registry versions", ["version", "state", "run date"], versions)
    if outcomes != EXPECTED or outcome != "promoted":
        raise SystemExit(f"the week went {outcomes} (full retrain: {outcome}); expected {EXPECTED}")
    last_good = {n: max(k for k in range(1, n + 1) if EXPECTED[k] == "promoted") for n in EXPECTED}
    by_date = {v[2]: v[0] for v in versions}
    expected_production = [by_date[day(last_good[n] + 1)] for n in EXPECTED]
    if production != expected_production:
        raise SystemExit(f"production went {production}; expected the last good version each day {expected_production}")
