"""Rows/s of the three data jobs vs the engine's floor, measured in the same run on local[2].

Every job and floor first runs once on a small set (a JVM warm-up for both sides); then each is
timed alternately with its floor, the median of 3 runs up to 1M rows and one run above. The floor for each job is a plain Spark job that reads the same Avro, groups by the same key
and writes about as much: explode + group by (name, term) for indexing, a round-robin
repartition into the same number of files for preparation, group by entity for partitioning.

    make bench BENCH=data_jobs                       # 1M and 10M rows
    GLMIX_BENCH_ROWS=1000000 make bench BENCH=data_jobs
    GLMIX_BENCH_MASTER=yarn make bench BENCH=data_jobs   # on the dev cluster (started if needed; data on HDFS)
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from contextlib import nullcontext

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.datasets import CACHE, synthetic
from bench.dev_cluster import running_cluster
from bench.report import print_table, timed
from bench.sizes import SMOKE, sizes
from glmix.io.storage import join, qualified, storage_for
from glmix.settings import FeatureShard
from glmix.spark.session import session
from jobs.index_features import index_features
from jobs.partition_random_effect import partition_random_effect
from jobs.prepare_fixed_effect import prepare_fixed_effect

BAGS = ("features", "userFeatures", "itemFeatures")
FILES = 4
WARM_UP_ROWS = 100_000


def run() -> None:
    master = os.environ.get("GLMIX_BENCH_MASTER", "local[2]")
    rows_list = sizes("1000000,10000000", "5000", "GLMIX_BENCH_ROWS")
    root = "hdfs:///bench" if master == "yarn" else None
    with running_cluster() if master == "yarn" else nullcontext():
        spark = session(master, "glmix-bench-data-jobs", executor_memory="2g", executors=2, quick_start=SMOKE,
                        extra={"spark.driver.memory": "4g"})
        if not SMOKE:
            print(f"warm-up: every job and floor once on {WARM_UP_ROWS:,} rows (JIT-compiles both sides' code paths)")
            bench_size(spark, master, WARM_UP_ROWS, root, show=False)
        for rows in rows_list:
            bench_size(spark, master, rows, root)
        spark.stop()


def repeats_for(rows: int) -> int:
    """Small sizes vary ~10% from run to run (JIT, GC): the median of 3 there, one run above 1M rows."""
    return 1 if SMOKE or rows > 1_000_000 else 3


def median_times(floor: Callable[[], object], job: Callable[[], object], output: str,
                 repeats: int) -> tuple[float, float]:
    """Median seconds of the job and of its floor, run alternately ``repeats`` times."""
    jobs, floors = [], []
    for _ in range(repeats):
        storage_for(output).delete(output)
        floors.append(timed(floor))
        jobs.append(timed(job))
    return statistics.median(jobs), statistics.median(floors)


def bench_size(spark: SparkSession, master: str, rows: int, root: str | None, show: bool = True) -> None:
    data = qualified(join(synthetic(rows, root=root), "train"))
    out = qualified(join(root or str(CACHE), f"out-{rows}"))
    storage_for(out).delete(out)
    raw = spark.read.format("avro").load(data)
    exploded = raw.select(F.explode(F.concat(*[F.col(b) for b in BAGS])).alias("f"))
    repeats = repeats_for(rows) if show else 1
    results = [("index_features", *median_times(
        lambda: exploded.groupBy("f.name", "f.term").count().write.mode("overwrite").parquet(join(out, "floor-index")),
        lambda: index_features(spark, data, join(out, "index"), FeatureShard(name="global", bags=BAGS)),
        join(out, "index"), repeats))]
    results.append(("prepare_fixed_effect", *median_times(
        lambda: raw.select("uid", "label", "features", "userFeatures", "itemFeatures").repartition(FILES)
        .write.mode("overwrite").parquet(join(out, "floor-prepare")),
        lambda: prepare_fixed_effect(spark, data, join(out, "index"), join(out, "fe"), FILES, task="logistic"),
        join(out, "fe"), repeats)))
    index_features(spark, data, join(out, "index-item"), FeatureShard(name="peruser", bags=("itemFeatures",)))
    results.append(("partition_random_effect", *median_times(
        lambda: raw.groupBy("userId").agg(F.collect_list(F.struct("uid", "label", "itemFeatures")).alias("rows"))
        .write.mode("overwrite").parquet(join(out, "floor-re")),
        lambda: partition_random_effect(spark, data, "userId", join(out, "index-item"), join(out, "re"),
                                        lower_bound=1, upper_bound=1000, partitions=8, task="logistic"),
        join(out, "re"), repeats)))
    if show:
        print_table(f"data jobs on {master}, {rows:,} input rows (~30 non-zeros each), median of {repeats}",
                    ["job", "seconds", "rows/s", "floor seconds", "floor rows/s", "job / floor"],
                    [[name, j, rows / j, f, rows / f, j / f] for name, j, f in results])
    storage_for(out).delete(out)
