"""The same GAME config on the dev cluster (Spark on YARN, launcher on YARN, data on HDFS) and locally,
on Photon-ML-shaped data: no uid on any row, renamed columns, unions, int ids, empty files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.devcluster import Cluster
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.io.storage import is_published, storage_for
from glmix.model.game_model import read_game_model
from tests.conftest import our_running_apps
from tests.photon_data import RENAMED, write_photon_dataset


def config(data: str, output: str, master: str, backend: str) -> GameConfig:
    return GameConfig.from_dict({
        "name": "it-game", "task": "logistic",
        "input": {"train": f"{data}/train", "validation": f"{data}/validation"}, "output": output,
        "columns": {"response": "response", **RENAMED},
        "feature_shards": [{"name": "global", "bags": ["features", "userFeatures", "movieFeatures"]},
                           {"name": "movie", "bags": ["movieFeatures"]}],
        "coordinates": {"global": {"type": "fixed", "shard": "global", "l2": 1.0},
                        "per-user": {"type": "random", "shard": "movie", "entity_field": "userId", "l2": 3.0,
                                     "lower_bound": 2}},
        "update_sequence": ["global", "per-user"], "passes": 1, "evaluators": ["AUC", "LOGISTIC_LOSS", "AUC:userId"],
        "resources": {"spark": {"master": master, "executors": 2, "executor_memory": "512m", "partitions": 2},
                      "launcher": {"backend": backend, "workers": 1, "memory": 1536}},
        "flow": {"retries": 0}})


def test_game_flow_on_yarn_matches_the_local_run(dev_cluster: Cluster, spark, tmp_path: Path,
                                                 hdfs_root: str) -> None:
    write_photon_dataset(tmp_path / "data", rows=5000, seed=9, variant="null", names=RENAMED)
    hdfs = storage_for(hdfs_root)
    for path in (tmp_path / "data").glob("[tv]*/*.avro"):
        hdfs.write_bytes(f"{hdfs_root}/data/{path.parent.name}/{path.name}", path.read_bytes())

    on_yarn = config(f"{hdfs_root}/data", f"{hdfs_root}/out", "yarn", "yarn")
    project = build_project(on_yarn, tmp_path / "yarn-project")
    # its own process, as a user would run it: one Spark application on YARN for every Spark stage
    result = subprocess.run([sys.executable, "-m", "glmix.cli", "flow", "run", str(project)],
                            capture_output=True, text=True, timeout=840)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert is_published(f"{hdfs_root}/out/best")
    models, _ = read_game_model(f"{hdfs_root}/out/best")
    assert [m.name for m in models] == ["global", "per-user"]
    assert storage_for(f"{hdfs_root}/out/report/index.html").exists(f"{hdfs_root}/out/report/index.html")
    remote = json.loads(storage_for(f"{hdfs_root}/out/summary.json").read_bytes(f"{hdfs_root}/out/summary.json"))

    local = config(str(tmp_path / "data"), str(tmp_path / "out"), "local[2]", "local")
    results = LocalRunner(build_project(local, tmp_path / "local-project")).run()
    assert all(r.status == "succeeded" for r in results)
    here = json.loads((tmp_path / "out" / "summary.json").read_text())
    for a, b in zip(remote["steps"], here["steps"], strict=True):
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-6)
    assert remote["steps"][1]["metrics"]["AUC"] > remote["steps"][0]["metrics"]["AUC"]
    assert not our_running_apps(dev_cluster.conf_dir)
