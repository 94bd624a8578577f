"""The Keras fixed effect with two workers on the two-node YARN dev cluster: a killed worker's attempt
restarts on the other node and resumes from the backup published on HDFS."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import psutil

from cluster.devcluster import Cluster
from glmix.data.sparse_rows import total_rows
from glmix.data.synthetic import generate, generic_spec
from glmix.io.parquet import read_parquet
from glmix.io.storage import copy_tree, is_published, storage_for
from glmix.settings import FeatureShard
from jobs.index_features import index_features
from jobs.prepare_fixed_effect import prepare_fixed_effect
from launcher.spec import JobSpec
from launcher.yarn import YarnBackend, read_task_results
from tests.conftest import our_running_apps


def published_backup(root: str) -> bool:
    """Whether the chief has published an epoch's backup beside the output (its default place)."""
    storage = storage_for(root)
    return any(e.name.startswith("._keras-backup-") and is_published(e.uri) for e in storage.list(root))


def kill_worker_after_first_backup(root: str, stop: threading.Event, killed: list[int]) -> None:
    """Like a lost node: SIGKILL worker 1 of attempt 1 once the chief has published a backup."""
    while not stop.is_set():
        if published_backup(root):
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    environ = proc.environ()
                except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue
                if ("glmix.train.keras_fixed_effect" in " ".join(proc.info["cmdline"] or [])
                        and environ.get("GLMIX_TASK_INDEX") == "1" and environ.get("GLMIX_ATTEMPT") == "1"):
                    proc.kill()
                    killed.append(proc.pid)
                    return
        time.sleep(0.2)


def test_two_keras_workers_on_yarn_resume_after_a_kill(dev_cluster: Cluster, spark, tmp_path: Path,
                                                       hdfs_root: str) -> None:
    spec = generic_spec(rows=8000, users=20, items=10, context_dimension=10, context_nnz=10, seed=5)
    generate(spec.model_copy(update={"nonlinear_std": 2.0}), str(tmp_path / "data"))
    index_features(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"),
                   FeatureShard(name="g", bags=("features", "userFeatures", "itemFeatures")))
    for split in ("train", "validation"):
        prepare_fixed_effect(spark, str(tmp_path / "data" / split), str(tmp_path / "index"),
                             str(tmp_path / "fe" / split), 2)
    copy_tree(str(tmp_path / "index"), f"{hdfs_root}/index")
    copy_tree(str(tmp_path / "fe"), f"{hdfs_root}/fe")
    command = (f"{sys.executable} -m glmix.train.keras_fixed_effect --index {hdfs_root}/index --train {hdfs_root}/fe/train "
               f"--validation {hdfs_root}/fe/validation --output {hdfs_root}/model --task logistic --epochs 16 "
               f"--batch-size 128")
    job = JobSpec.from_dict({"name": "glmix-it-keras", "max_attempts": 2, "timeouts": {"registration": 120},
                             "tasks": {"worker": {"instances": 2, "memory": 2048, "command": command}}})
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_worker_after_first_backup, args=(hdfs_root, stop, killed), daemon=True)
    killer.start()
    try:
        result = YarnBackend().submit(job)
    finally:
        stop.set()
        killer.join()
    assert killed, "worker 1 was never killed"
    assert result.final_status == "SUCCEEDED" and result.attempts == 2, result.failed
    assert is_published(f"{hdfs_root}/model")
    report = json.loads(storage_for(f"{hdfs_root}/model").read_bytes(f"{hdfs_root}/model/_report.json"))
    assert report["workers"] == 2 and 0 < report["epochs_run"] < 16     # the second attempt resumed
    first, second = result.attempt_ids
    killed_on = read_task_results(first)["worker:1"]["host"]
    assert killed_on not in {r["host"] for r in read_task_results(second).values()}   # on the other node
    assert not published_backup(hdfs_root)                              # removed once the model is published
    scores = read_parquet(f"{hdfs_root}/model/scores/train")
    assert scores.num_rows == total_rows(str(tmp_path / "fe" / "train"))
    assert storage_for(hdfs_root).exists(f"{hdfs_root}/model/saved_model/saved_model.pb")
    assert not our_running_apps(dev_cluster.conf_dir)
