"""The whole GAME flow at scale: each stage's time next to its floor, where the time goes, peak memory.

Generic synthetic data (users = rows / 10, 100k items, a 100k-feature context bag, ~30 non-zeros a
row); the flow of a global fixed effect + per-user + per-item random effects, two passes, run by
``glmix flow run``'s runner in this process on local[2] and on the YARN dev cluster (data on HDFS).
One Spark application serves every Spark node; its event log (each node's Spark jobs carry the
node's name as their job group) gives each stage's task time (core-seconds), bytes read and
shuffled, and each executor's peak memory; the trainers' reports give the Python workers' peaks.

Floors: a plain Spark job doing each stage's reads, shuffles and writes without glmix's work
(indexing: explode + group by (name, term); preparing: a round-robin repartition into the same
files; partitioning: group by entity into lists; training a random effect: read the partitioned
entities whole, join every row's uid with the other coordinates' training scores and sum them per
entity (the trainer's offsets: a shuffle by uid, one by entity), write one model row per entity
holding its distinct features and one score per training row; scoring: the validation rows joined
with each random effect's models, written); the fixed effect's floor is loading its prepared rows in
one process and the solver's gradient evaluations as two scipy sparse products each. A floor runs once per stage kind
and counts for every node of that kind (the passes repeat training and scoring; a random effect's
step node trains and scores, so its floor is both).

    make bench BENCH=flow_scale                                     # 1M and 10M rows, local[2] and yarn
    GLMIX_BENCH_ROWS=1000000 GLMIX_BENCH_MASTERS=yarn make bench BENCH=flow_scale
    GLMIX_CLUSTER_NODE_MB=12288 GLMIX_BENCH_ROWS=10000000 GLMIX_BENCH_MASTERS=yarn ...   # nodes with room (check_room)
    GLMIX_BENCH_JSON=bench-flow.json ...     # also write the measurements (python -m bench.cost_model reads them)
    GLMIX_BENCH_ROWS=100000,1000000,100000,1000000,100000,1000000,10000000 ...   # repeated sizes, interleaved

With two sizes or more, the cost model (bench/cost_model.py) is fitted to them and printed; of sizes
run more than once, it takes each stage's fastest run.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.cost_model import print_model
from bench.datasets import synthetic
from bench.dev_cluster import running_cluster
from bench.report import print_table, timed
from bench.sizes import SMOKE, size, sizes
from glmix.data.sparse_rows import load_rows
from glmix.flow.runner import LocalRunner, NodeResult
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.game.plan import GamePlan
from glmix.io.storage import join, qualified, storage_for
from glmix.spark.session import session

BAGS = ("features", "userFeatures", "itemFeatures")
RANDOM_EFFECTS = {"per-user": ("userId", "itemFeatures"), "per-item": ("itemId", "userFeatures")}
ITEMS = 100_000
PASSES = size(2, 1)
# a first flow that is not measured: the JVM's start, class loading and JIT compiling otherwise land on
# the first measured size's first stages (the cost model read them as the index stage's overhead)
WARM_UP_ROWS = 20_000
FLOOR_EVALUATIONS = 10
PARTITIONS = 8
EXECUTORS = 2    # on YARN, of 1 core each (glmix.spark.session)
EXECUTOR_MB = 3072
EXECUTOR_CONTAINER_MB = EXECUTOR_MB + max(384, EXECUTOR_MB // 10)   # with Spark's default memory overhead on YARN


def worker_memory_mb(rows: int) -> int:
    """The fixed effect's launcher worker: it holds every training row (~1 GB at 1M rows)."""
    return 2048 if rows <= 1_000_000 else 7168


def check_room(rows: int, node_memory_mb: int) -> None:
    """On YARN the flow's one Spark application holds its executors throughout, so the fixed effect's
    worker must fit beside one on a node; else its launcher waits 5 minutes for a container and fails."""
    need = worker_memory_mb(rows) + EXECUTOR_CONTAINER_MB
    if need > node_memory_mb:
        raise SystemExit(f"{rows:,} rows on YARN: the fixed effect's {worker_memory_mb(rows):,} MB worker must fit "
                         f"beside a {EXECUTOR_CONTAINER_MB:,} MB Spark executor on one node, and the dev cluster's "
                         f"nodes have {node_memory_mb:,} MB: make cluster-down, then GLMIX_CLUSTER_NODE_MB="
                         f"{-(-(need + 1024) // 1024) * 1024}")


def config(data: str, output: str, master: str, rows: int) -> GameConfig:
    yarn = master == "yarn"
    worker_mb = worker_memory_mb(rows)
    return GameConfig.from_dict({
        "name": "bench-flow-scale", "task": "logistic",
        "input": {"train": f"{data}/train", "validation": f"{data}/validation"}, "output": output,
        "feature_shards": [{"name": "global", "bags": list(BAGS)}, {"name": "item", "bags": ["itemFeatures"]},
                           {"name": "user", "bags": ["userFeatures"]}],
        "coordinates": {"global": {"type": "fixed", "shard": "global", "l2": 1.0, "compute": "scipy"},
                        "per-user": {"type": "random", "shard": "item", "entity_field": "userId", "lower_bound": 2,
                                     "upper_bound": 1000, "l2": 10.0, "intercept_l2": 1.0},
                        "per-item": {"type": "random", "shard": "user", "entity_field": "itemId", "lower_bound": 2,
                                     "upper_bound": 1000, "l2": 10.0, "intercept_l2": 1.0}},
        "update_sequence": ["global", "per-user", "per-item"], "passes": PASSES, "evaluators": ["AUC"],
        "resources": {"spark": {"master": master, "executors": EXECUTORS, "executor_memory": f"{EXECUTOR_MB}m", "partitions": PARTITIONS},
                      "launcher": {"backend": "yarn" if yarn else "local", "workers": 1, "memory": worker_mb}},
        "flow": {"retries": 0, "retry_backoff_ms": 0}})


def cores(master: str) -> int:
    """The cores the flow's Spark tasks run on: local[N]'s N, or the YARN executors'."""
    local = re.fullmatch(r"local\[(\d+)\]", master)
    return int(local[1]) if local else EXECUTORS


def kind(node: str) -> str:
    """p1-global-train -> global-train; p1-per-user -> per-user (a random effect's step: it trains, then
    scores); p1-global -> score (the fixed effect's step scores); partition, prepare, index as named."""
    step = re.match(r"p\d+-(.+)$", node)
    if step:
        return step[1] if step[1].endswith("-train") or step[1] in RANDOM_EFFECTS else "score"
    return node


def event_log_measures(directory: Path) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Per job group (flow node): core-seconds of task time, bytes read, shuffled and written; and per
    executor: peak JVM heap, JVM process RSS and Python workers' RSS, in MB."""
    nodes: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    executors: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    stage_group: dict[int, str] = {}
    for log in directory.iterdir():
        for line in log.read_text().splitlines():
            event = json.loads(line)
            kind_ = event["Event"]
            if kind_ == "SparkListenerJobStart":   # a node's group, or NODE:JOB for the jobs of a together node
                group = (event.get("Properties") or {}).get("spark.jobGroup.id") or "-"
                for stage in event["Stage IDs"]:
                    stage_group[stage] = group.split(":")[0]
            elif kind_ == "SparkListenerTaskEnd" and event.get("Task Metrics"):
                m, node = event["Task Metrics"], nodes[stage_group.get(event["Stage ID"], "-")]
                node["core_seconds"] += m["Executor Run Time"] / 1000
                node["input_bytes"] += m.get("Input Metrics", {}).get("Bytes Read", 0)
                node["shuffle_bytes"] += m.get("Shuffle Write Metrics", {}).get("Shuffle Bytes Written", 0)
                node["output_bytes"] += m.get("Output Metrics", {}).get("Bytes Written", 0)
            elif kind_ == "SparkListenerStageExecutorMetrics":
                peaks, mine = event["Executor Metrics"], executors[event["Executor ID"]]
                for name, key in (("heap_mb", "JVMHeapMemory"), ("jvm_rss_mb", "ProcessTreeJVMRSSMemory"),
                                  ("python_rss_mb", "ProcessTreePythonRSSMemory")):
                    mine[name] = max(mine[name], peaks.get(key, 0) / 2**20)
    return nodes, executors


def floors(spark: SparkSession, data: str, prepared: str, scratch: str,
           fixed_effect_reports: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds of each stage kind's floor (see the module docstring)."""
    train, validation = (spark.read.format("avro").load(join(data, split)) for split in ("train", "validation"))

    def write(frame: Any, name: str) -> None:
        frame.write.mode("overwrite").parquet(join(scratch, name))

    out = {"index": timed(lambda: write(train.select(F.explode(F.concat(*[F.col(b) for b in BAGS])).alias("f"))
                                        .groupBy("f.name", "f.term").count(), "index")),
           "prepare": timed(lambda: write(train.select("uid", "label", *BAGS).repartition(PARTITIONS), "prepare-train"))
           + timed(lambda: write(validation.select("uid", "label", *BAGS).repartition(PARTITIONS), "prepare-validation"))}
    write(train.select("uid", F.lit(0.0).alias("score")), "scores")   # as the previous coordinate wrote them
    for name, (field, bag) in RANDOM_EFFECTS.items():
        out["partition"] = out.get("partition", 0.0) + timed(partial(
            write, train.groupBy(field).agg(F.collect_list(F.struct("uid", "label", bag)).alias("rows")), f"re-{field}"))
        out[name] = timed(partial(random_effect_floor, spark, scratch, field, bag))
    models = {field: spark.read.parquet(join(scratch, f"model-{field}")) for field, _ in RANDOM_EFFECTS.values()}
    scored = validation.select("uid", *models)
    for field, model in models.items():
        scored = scored.join(model, field, "left").withColumn(f"m_{field}", F.xxhash64("model", "offset")).drop(
            "model", "offset")
    out["score"] = timed(lambda: write(scored.select("uid", *[f"m_{f}" for f in models]), "score"))
    loading, evaluation = fixed_effect_floor(prepared, fixed_effect_reports[0]["num_features"])
    out["global-train"] = sum(loading + evaluation * r["evaluations"] for r in fixed_effect_reports)
    return out


def random_effect_floor(spark: SparkSession, scratch: str, field: str, bag: str) -> None:
    """A random effect's training without the solving: each entity's rows read whole, their offsets
    joined by uid and summed per entity, a model row of the entity's distinct features and every
    row's score written."""
    grouped = spark.read.parquet(join(scratch, f"re-{field}"))
    rows = grouped.select(field, F.explode("rows.uid").alias("uid")).join(
        spark.read.parquet(join(scratch, "scores")), "uid").cache()
    rows.write.mode("overwrite").parquet(join(scratch, f"scores-{field}"))
    offsets = rows.groupBy(field).agg(F.sum("score").alias("offset"))
    grouped.join(offsets, field).select(field, "offset", F.array_distinct(F.flatten(f"rows.{bag}")).alias("model")) \
        .write.mode("overwrite").parquet(join(scratch, f"model-{field}"))
    rows.unpersist()


def fixed_effect_floor(prepared: str, num_features: int) -> tuple[float, float]:
    """Seconds to load the prepared rows in this process, and of one gradient evaluation (X @ w, X.T @ r)."""
    started = time.perf_counter()
    rows = load_rows(prepared)
    x = rows.to_scipy(num_features)
    loading = time.perf_counter() - started
    w = np.zeros(num_features)
    started = time.perf_counter()
    for _ in range(FLOOR_EVALUATIONS):
        r = 1 / (1 + np.exp(-(x @ w))) - rows.label
        w -= 1e-9 * (x.T @ r)
    return loading, (time.perf_counter() - started) / FLOOR_EVALUATIONS


def run() -> None:
    masters = os.environ.get("GLMIX_BENCH_MASTERS", "local[2]" if SMOKE else "local[2],yarn").split(",")
    rows_list = sizes("1000000,10000000", "5000", "GLMIX_BENCH_ROWS")
    measured = []
    for master in masters:
        with running_cluster() if master == "yarn" else nullcontext() as cluster:
            if cluster is not None:
                for rows in rows_list:
                    check_room(rows, cluster.node_memory_mb)
            if not SMOKE:
                print(f"warm-up: the flow and its floors once on {WARM_UP_ROWS:,} rows (not measured)")
                measure(master, WARM_UP_ROWS)
            for rows in rows_list:
                measured.append(bench_flow(master, rows))
                if os.environ.get("GLMIX_BENCH_JSON"):
                    Path(os.environ["GLMIX_BENCH_JSON"]).write_text(json.dumps(measured, indent=1))
        print_model([m for m in measured if m["master"] == master])


@contextmanager
def event_logged_session(master: str, directory: Path) -> Iterator[SparkSession]:
    spark = session(master, "glmix-bench-flow-scale", executors=EXECUTORS, executor_memory=f"{EXECUTOR_MB}m", quick_start=SMOKE,
                    extra={"spark.driver.memory": "6g" if master.startswith("local") else "3g",
                           "spark.eventLog.enabled": "true", "spark.eventLog.dir": directory.as_uri(),
                           "spark.eventLog.rolling.enabled": "false", "spark.eventLog.compress": "false",
                           "spark.eventLog.logStageExecutorMetrics": "true",
                           "spark.executor.processTreeMetrics.enabled": "true"})
    spark.sparkContext.setLogLevel("ERROR")  # as the flow runner's own session: the stages' reports are in their logs
    try:
        yield spark
    finally:
        spark.stop()


Measures = tuple[float, list[NodeResult], dict[str, float], dict[str, dict[str, float]], dict[str, dict[str, float]],
                 list[dict[str, Any]], dict[str, float]]


def bench_flow(master: str, rows: int) -> dict[str, Any]:
    """Run the flow and its floors on ``rows`` rows; print the tables; return the measurements."""
    return print_measures(master, rows, *measure(master, rows))


def measure(master: str, rows: int) -> Measures:
    """The flow's seconds and node results, the floors, the event log's measures per node and per
    executor, the fixed effect's reports and the Python workers' peaks."""
    root = "hdfs:///bench" if master == "yarn" else None
    data = qualified(synthetic(rows, items=min(ITEMS, max(rows // 100, 100)), root=root))
    with tempfile.TemporaryDirectory(prefix="glmix-bench-flow-") as tmp:
        local = Path(tmp)
        output = qualified(join(root, f"flow-scale-{rows}") if root else str(local / "out"))
        scratch = qualified(join(root, f"flow-scale-floors-{rows}") if root else str(local / "floors"))
        for path in (output, scratch):     # on HDFS a failed run's outputs remain: its flow would resume, not run
            storage_for(path).delete(path)
        c = config(data, output, master, rows)
        (local / "events").mkdir()
        with event_logged_session(master, local / "events") as spark:
            started = time.monotonic()
            results = LocalRunner(build_project(c, local / "flow"), parallel=1).run()
            seconds = time.monotonic() - started
            failed = [r for r in results if r.status != "succeeded"]
            if failed:
                raise SystemExit(f"stage {failed[0].name} failed: {failed[0].error} (log: {failed[0].log})")
            reports = [json.loads(storage_for(output).read_bytes(join(output, "run-0", f"pass-{p}", "global", "_report.json")))
                       for p in range(PASSES)]
            spark.sparkContext.setJobGroup("floors", "floors")
            floor = floors(spark, data, GamePlan(c).prepared("train"), scratch, reports)
        nodes, executors = event_log_measures(local / "events")
        for path in (output, scratch):
            storage_for(path).delete(path)
        python_peaks = {r.name: _python_peak(r) for r in results}
    return seconds, results, floor, nodes, executors, reports, python_peaks


def _python_peak(result: NodeResult) -> float:
    """A random-effect training node's Python workers' peak RSS (MB), from the job's report in its log."""
    found = re.findall(r'"peak_worker_rss_mb": ([\d.]+)', Path(result.log).read_text())
    return float(found[-1]) if found else 0.0


def print_measures(master: str, rows: int, seconds: float, results: list[NodeResult], floor: dict[str, float],
                   nodes: dict[str, dict[str, float]], executors: dict[str, dict[str, float]],
                   reports: list[dict[str, Any]], python_peaks: dict[str, float]) -> dict[str, Any]:
    report = reports[0]
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in results:
        k = by_kind[kind(r.name)]
        k["nodes"] += 1
        k["seconds"] += r.seconds
        for key, value in nodes.get(r.name, {}).items():
            k[key] += value
        k["python_peak_mb"] = max(k["python_peak_mb"], python_peaks.get(r.name, 0.0))
    # a floor per node of the kinds the passes repeat: a random effect's step trains and scores
    per_node = {"score": floor["score"], **{name: floor[name] + floor["score"] for name in RANDOM_EFFECTS}}
    for name, k in by_kind.items():
        k["floor"] = per_node[name] * k["nodes"] if name in per_node else floor.get(name, 0.0)
    table = []
    for name, k in sorted(by_kind.items(), key=lambda kv: -kv[1]["seconds"]):
        table.append([name, int(k["nodes"]), k["seconds"], k["floor"] or "-",
                      k["seconds"] / k["floor"] if k["floor"] else "-", k["core_seconds"],
                      rows / k["core_seconds"] if k["core_seconds"] else "-", k["shuffle_bytes"] / rows])
    total_floor = sum(k["floor"] for k in by_kind.values())
    print_table(f"GAME flow on {master}, {rows:,} rows (global + per-user + per-item, {PASSES} passes, one stage at a time)",
                ["stage kind", "nodes", "seconds", "floor s", "x floor", "task core-s", "rows / core-s",
                 "shuffle B / row"], table)
    print_table("whole flow", ["measure", "value"],
                [["seconds (all stages)", seconds], ["sum of floors (stages that have one)", total_floor],
                 ["stages with a floor: seconds / floor", sum(k["seconds"] for k in by_kind.values() if k["floor"])
                  / total_floor if total_floor else "-"],
                 *[[f"fixed effect, pass {p}: load s / solve s / evaluations", f"{r['load_seconds']:.1f} / "
                    f"{r['train_seconds']:.1f} / {r['evaluations']}"] for p, r in enumerate(reports)]])
    peaks = [[f"Spark executor {e}", m["heap_mb"], m["jvm_rss_mb"], m["python_rss_mb"]] for e, m in sorted(executors.items())]
    peaks.append(["fixed-effect worker (launcher)", "-", "-", report["peak_rss_mb_this_worker"]])
    peaks += [[f"{name} Python workers", "-", "-", k["python_peak_mb"]] for name, k in by_kind.items() if k["python_peak_mb"]]
    print_table("peak memory per container (MB)", ["process", "JVM heap", "JVM RSS", "Python RSS"], peaks)
    return {"master": master, "rows": rows, "cores": cores(master), "seconds": seconds, "floors": floor, "fixed_effect": [{
        k: r[k] for k in ("load_seconds", "train_seconds", "wall_seconds", "evaluations", "nnz_this_worker",
                          "peak_rss_mb_this_worker")} for r in reports],
            "stages": {name: dict(k) for name, k in by_kind.items()}, "executors": executors}
