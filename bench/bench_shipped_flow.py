"""The GAME flow on the YARN dev cluster run as Azkaban runs it against the in-process runner.

Literal: the project built with ``--ship``, every node its own process (``glmix flow run --literal``):
a fresh ``spark-submit --deploy-mode cluster`` per Spark stage with the packed environment and code,
a launcher client for the fixed effect. In-process: ``glmix flow run``, one Spark application for
every Spark stage. Same MovieLens-shaped data on HDFS, same config (global + per-user + per-movie,
one pass, one executor per stage). The literal flow runs twice: the first run includes YARN
localizing the environment where a node has not yet (once per node and environment version), the
second is what every later day costs. Goal (issue 26): the literal flow within 2x the in-process one.

Not run at a smoke size by ``make test``: tests/test_game_yarn.py runs a literal shipped flow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.dev_cluster import running_cluster
from bench.report import node_kind, print_table
from bench.sizes import size
from glmix.data.synthetic import generate, movielens_spec
from glmix.deploy import ship
from glmix.game.config import GameConfig
from glmix.game.demo import EXAMPLE_CONFIG
from glmix.game.flow_builder import build_project
from glmix.io.storage import storage_for

ROOT = "hdfs:///tmp/glmix-bench-shipped-flow"


def config(data: str, output: str) -> GameConfig:
    raw = GameConfig.from_yaml(EXAMPLE_CONFIG).to_dict()
    # the fixed effect computes with scipy (no TensorFlow to ship): YARN unpacks an environment on a
    # node the first time a container there needs it, and TensorFlow's (2.8 GB) on the second node
    # would land in the steady run
    raw["coordinates"]["global"]["compute"] = "scipy"
    raw.update({"name": "bench-shipped", "passes": 1, "input": {"train": f"{data}/train", "validation": f"{data}/validation"},
                "output": output, "flow": {"retries": 0, "retry_backoff_ms": 0},
                "resources": {"spark": {"master": "yarn", "executors": 1, "executor_memory": "512m", "partitions": 2},
                              "launcher": {"backend": "yarn", "workers": 1, "memory": 1536}}})
    return GameConfig.from_dict(raw)


def run_flow(project: Path, literal: bool, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "glmix.cli", "flow", "run", str(project), "--restart",
                           *(["--literal"] if literal else [])], capture_output=True, text=True, env=env)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"flow {project} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    stages = {m[1]: float(m[2]) for m in re.finditer(r"│ (\S+)\s+│ succeeded │\s+([\d.]+) │", done.stdout)}
    return seconds, stages


def run() -> None:
    with running_cluster() as cluster, tempfile.TemporaryDirectory(prefix="glmix-bench-shipped-") as tmp:
        local = Path(tmp)
        generate(movielens_spec(rows=size(10_000, 5_000), seed=0), str(local / "data"), processes=os.cpu_count() or 1)
        hdfs = storage_for(ROOT)
        hdfs.delete(ROOT)
        for path in (local / "data").glob("[tv]*/*.avro"):
            hdfs.write_bytes(f"{ROOT}/data/{path.parent.name}/{path.name}", path.read_bytes())
        c = config(f"{ROOT}/data", f"{ROOT}/out")
        started = time.monotonic()
        shipment = ship(c.needs_tensorflow)
        shipping = time.monotonic() - started
        # this machine as an Azkaban executor: the cluster's Spark client configuration (both runs)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "SPARK_CONF_DIR": str(cluster.spark_conf_dir)}
        in_process, in_stages = run_flow(build_project(c, local / "in-process"), False, env)
        literal_project = build_project(c, local / "literal", shipment)
        first, _ = run_flow(literal_project, True, env)
        literal, lit_stages = run_flow(literal_project, True, env)
        hdfs.delete(ROOT)
    rows: list[list[Any]] = [["in-process (glmix flow run)", in_process, 1.0],
                             ["literal, shipped (--literal), steady", literal, literal / in_process],
                             ["literal, first run (+ localizing the env on a new node)", first, first / in_process]]
    print_table(f"GAME flow on YARN, {size(10_000, 5_000)} rows, {len(lit_stages)} nodes (seconds; goal: literal <= 2x)",
                ["run", "seconds", "x in-process"], rows)
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for stage, seconds in lit_stages.items():
        totals = by_kind[node_kind(stage)]
        totals[0] += 1
        totals[1] += in_stages.get(stage, 0.0)
        totals[2] += seconds
    print_table("seconds by node kind (nodes run side by side overlap)",
                ["node kind", "nodes", "in-process", "literal", "literal - in-process per node"],
                [[k, int(n), a, b, (b - a) / n] for k, (n, a, b) in sorted(by_kind.items(), key=lambda kv: -kv[1][2])])
    print_table("shipping (first time on this machine: build and pack the environment, then upload)",
                ["measure", "value"], [["seconds to ship (0 when already shipped)", shipping]])
