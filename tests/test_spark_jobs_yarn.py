"""A data job through spark-submit (client mode, unshipped) on the real YARN cluster, against the
same job run locally. The partitioning job stands for the data jobs here (it reads Avro and an
index, shuffles and writes Parquet); every job runs on YARN in cluster mode, shipped, in
tests/test_game_yarn.py's literal flow."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from cluster.devcluster import Cluster
from glmix.data.synthetic import generate, generic_spec
from glmix.io.parquet import read_parquet
from glmix.io.storage import copy_tree
from glmix.settings import FeatureShard
from glmix.spark.session import spark_submit_command
from jobs.index_features import index_features
from jobs.partition_random_effect import partition_random_effect

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def submit(job: str, args: list[str]) -> None:
    command, env = spark_submit_command("yarn", f"glmix-it-{job}", str(JOBS / f"{job}.py"), args,
                                        executor_memory="512m", executors=2)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def rows_by(table, key: str) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r[key])


def test_partitioning_on_yarn_matches_local(dev_cluster: Cluster, spark, tmp_path: Path, hdfs_root: str) -> None:
    spec = generic_spec(rows=3000, users=100, items=30, context_dimension=40, context_nnz=4, seed=5)
    spec = spec.model_copy(update={"rows_per_file": 1000})
    local, remote = str(tmp_path / "data"), f"{hdfs_root}/data"
    generate(spec, local)
    generate(spec, remote)

    shard = FeatureShard(name="g", bags=("features", "userFeatures", "itemFeatures"), min_count=2)
    index_features(spark, f"{local}/train", str(tmp_path / "idx"), shard)
    partition_random_effect(spark, f"{local}/train", "userId", str(tmp_path / "idx"), str(tmp_path / "re"),
                            lower_bound=5, upper_bound=50, partitions=3, task="logistic")

    copy_tree(str(tmp_path / "idx"), f"{hdfs_root}/idx")
    submit("partition_random_effect", ["--input", f"{remote}/train", "--entity-field", "userId",
                                       "--index", f"{hdfs_root}/idx", "--output", f"{hdfs_root}/re",
                                       "--lower-bound", "5", "--upper-bound", "50", "--partitions", "3",
                                       "--task", "logistic"])

    remote_entities = rows_by(read_parquet(f"{hdfs_root}/re/active"), "entity_id")
    local_entities = rows_by(pq.read_table(str(tmp_path / "re" / "active")).drop(["partition"]), "entity_id")
    assert remote_entities == local_entities and len(local_entities) > 10
