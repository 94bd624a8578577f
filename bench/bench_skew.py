"""Skew: a world whose top user holds 1% of all rows, through partitioning, training and scoring.

Per-user random effects on generic synthetic data (~20 rows a user, Zipf-skewed, the top user
forced to 1% of the rows), on local[2] with many shuffle partitions, as a cluster would use them
for a large day (each partition then holds well under 1% of the rows, so one entity's rows are a
straggler). Two runs of the same three jobs, in one process:

* **without skew handling**: no upper bound (every row of the top user grouped in one task and
  solved in one batch), Spark's adaptive skew join off;
* **glmix**: the random effect's upper bound (down-sampling as Photon ML does it: the heavy user's
  rows are thinned *before* grouping, see jobs/partition_random_effect) and Spark's adaptive skew
  join on, with thresholds scaled to this data, where the scoring job's rows meet the users' models
  (a sort-merge join: broadcasting is off, as for millions of models).

For each job's longest stage (the most task time; see ``stage_balance``): the longest task's time
over the median (from the Spark event log: executor run time of each task) and the most bytes a
task read over the median (shuffled bytes, else input bytes).

    make bench BENCH=skew
    GLMIX_BENCH_ROWS=2000000 make bench BENCH=skew
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.datasets import CACHE, synthetic
from bench.report import print_table
from bench.sizes import SMOKE, size
from glmix.io.storage import join
from glmix.model.game_model import CoordinateModel
from glmix.settings import FeatureShard
from glmix.train.random_effect import RandomEffectConfig

TOP_SHARE = 0.01
ROWS_PER_USER = 20
UPPER_BOUND = 1000
SHUFFLE_PARTITIONS = 64


def stage_balance(event_log: Path) -> dict[str, dict[str, Any]]:
    """Per job group (one glmix job), its longest stage — the most task time, among stages where at
    least two tasks read something — and how balanced its tasks are: over the tasks that read
    something (a shuffle into fewer keys than partitions leaves tasks empty), the longest task's
    time over the median, and the most bytes read over the median (bytes, not records: a grouping's
    shuffle combines each map task's rows of an entity into one record). The stage is named by its
    id and what its tasks read (shuffled rows, or input files)."""
    stage_group: dict[int, str] = {}
    tasks: dict[int, list[tuple[float, float, float]]] = defaultdict(list)   # seconds, shuffle bytes, input bytes
    for line in event_log.read_text().splitlines():
        event = json.loads(line)
        if event["Event"] == "SparkListenerJobStart":
            group = (event.get("Properties") or {}).get("spark.jobGroup.id")
            for stage in event["Stage IDs"]:
                if group:
                    stage_group[stage] = group
        elif event["Event"] == "SparkListenerTaskEnd" and event.get("Task Metrics"):
            metrics = event["Task Metrics"]
            shuffle = metrics.get("Shuffle Read Metrics", {})
            tasks[event["Stage ID"]].append((metrics["Executor Run Time"] / 1000,
                                             float(shuffle.get("Remote Bytes Read", 0) + shuffle.get("Local Bytes Read", 0)),
                                             float(metrics.get("Input Metrics", {}).get("Bytes Read", 0))))
    main: dict[str, dict[str, Any]] = {}
    for stage, all_tasks in tasks.items():
        measured = [(t, s + i) for t, s, i in all_tasks if s + i > 0]
        if len(measured) < 2 or stage not in stage_group:
            continue
        seconds, read = [m[0] for m in measured], [m[1] for m in measured]
        current = main.get(stage_group[stage])
        if current is None or sum(seconds) > current["total_s"]:
            reads = "shuffle" if any(s > 0 for _, s, _ in all_tasks) else "input"
            main[stage_group[stage]] = {
                "total_s": sum(seconds), "tasks": len(measured), "stage": f"{stage} ({reads})",
                "time": max(seconds) / max(statistics.median(seconds), 1e-3),
                "bytes": max(read) / max(statistics.median(read), 1.0)}
    return main


def run_jobs(data: str, index_dir: str, out: Path, skew_handling: bool) -> tuple[dict[str, float], dict[str, Any]]:
    """Partition, train, score under one session with an event log; returns seconds per job and the
    partitioning report."""
    from glmix.spark.scoring import score
    from glmix.spark.session import session
    from jobs.partition_random_effect import partition_random_effect
    from jobs.train_random_effect import train_random_effect

    logs = out / "events"
    shutil.rmtree(out, ignore_errors=True)
    logs.mkdir(parents=True)
    spark = session("local[2]", "bench-skew", quick_start=SMOKE, extra={
        "spark.driver.memory": "6g", "spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS),
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": logs.as_uri(),
        "spark.eventLog.rolling.enabled": "false", "spark.eventLog.compress": "false",
        "spark.sql.autoBroadcastJoinThreshold": "-1",
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
        "spark.sql.adaptive.skewJoin.enabled": str(skew_handling).lower(),
        "spark.sql.adaptive.skewJoin.skewedPartitionThresholdInBytes": "256k",
        "spark.sql.adaptive.advisoryPartitionSizeInBytes": "256k"})
    seconds: dict[str, float] = {}

    def timed(name: str, job: Any) -> Any:
        spark.sparkContext.setJobGroup(name, name)
        started = time.perf_counter()
        result = job()
        seconds[name] = time.perf_counter() - started
        return result

    bound = UPPER_BOUND if skew_handling else None
    partitioned = timed("partition", lambda: partition_random_effect(
        spark, join(data, "train"), "userId", index_dir, str(out / "partitions"), upper_bound=bound,
        partitions=8, task="logistic"))
    timed("train", lambda: train_random_effect(spark, str(out / "partitions"), index_dir, str(out / "model"),
                                               RandomEffectConfig(task="logistic", l2=1.0)))
    timed("score", lambda: score(spark, {"validation": join(data, "validation")},
                                 [CoordinateModel("per-user", "random", str(out / "model"), "userId")],
                                 str(out / "scores")))
    spark.stop()
    return seconds, partitioned


def run() -> None:
    from glmix.spark.session import session
    from jobs.index_features import index_features

    rows = size(1_000_000, 20_000, "GLMIX_BENCH_ROWS")
    data = synthetic(rows, users=rows // ROWS_PER_USER, items=1000, context_dimension=1000, context_nnz=5,
                     top_user_share=TOP_SHARE)
    index_dir = join(data + "-bench-skew", "index")
    spark = session("local[2]", "bench-skew-index", quick_start=SMOKE)
    index_features(spark, join(data, "train"), index_dir, FeatureShard(name="per-user", bags=("itemFeatures",)))
    spark.stop()
    results = {}
    for skew_handling in (False, True):
        out = CACHE / f"skew-{'handled' if skew_handling else 'plain'}"
        seconds, partitioned = run_jobs(data, index_dir, out, skew_handling)
        log = next((out / "events").iterdir())
        results[skew_handling] = (seconds, stage_balance(log), partitioned)
    plain, handled = results[False], results[True]
    top_rows = int(rows * (1 - 0.2) * TOP_SHARE)
    def of(result: tuple[Any, ...], job: str, key: str) -> Any:
        return result[1].get(job, {}).get(key, float("nan"))

    print_table(f"skew: {rows:,} rows, top user ~{top_rows:,} training rows ({TOP_SHARE:.0%}), "
                f"{SHUFFLE_PARTITIONS} shuffle partitions, local[2]; each job's longest stage",
                ["job", "seconds plain", "seconds glmix", "longest stage (glmix)", "tasks", "max/median time plain",
                 "max/median time glmix", "max/median bytes plain", "max/median bytes glmix"],
                [[job, plain[0][job], handled[0][job], of(handled, job, "stage"), of(handled, job, "tasks"),
                  of(plain, job, "time"),
                  of(handled, job, "time"), of(plain, job, "bytes"), of(handled, job, "bytes")]
                 for job in ("partition", "train", "score")])
    report = handled[2]
    print(f"glmix run: upper bound {UPPER_BOUND}: {report['entities_down_sampled']} user(s) down-sampled, "
          f"{report['rows_removed_by_down_sampling']:,} rows left to passive data; partition rows "
          f"{report['partition_rows']}")
