"""The same GAME config on the dev cluster (Spark on YARN, launcher on YARN, data on HDFS), run as
Azkaban runs it (each node its own process, glmix shipped to the containers), and locally, on
Photon-ML-shaped data: no uid on any row, renamed columns, unions, int ids, empty files."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.devcluster import REPO, Cluster
from glmix.deploy import ENV_LINK, ship
from glmix.flow.azkaban import read_project
from glmix.flow.runner import LocalRunner, substitute
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
        "coordinates": {"global": {"type": "fixed", "shard": "global", "l2": 1.0, "compute": "scipy"},
                        "per-user": {"type": "random", "shard": "movie", "entity_field": "userId", "l2": 3.0,
                                     "lower_bound": 2}},
        "update_sequence": ["global", "per-user"], "passes": 1, "evaluators": ["AUC", "LOGISTIC_LOSS", "AUC:userId"],
        "resources": {"spark": {"master": master, "executors": 1, "executor_memory": "512m", "partitions": 2},
                      "launcher": {"backend": backend, "workers": 1, "memory": 1536}},
        "flow": {"retries": 0}})


def _local_run_meanwhile(tmp_path: Path, running: dict[str, subprocess.Popen]) -> dict[str, int]:
    """The same config run locally while ``running`` go on; then their exit codes (killed on a failure)."""
    try:
        local = config(str(tmp_path / "data"), str(tmp_path / "out"), "local[2]", "local")
        results = LocalRunner(build_project(local, tmp_path / "local-project")).run()
        assert all(r.status == "succeeded" for r in results)
        return {name: process.wait(timeout=840) for name, process in running.items()}
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()


def test_shipped_flow_run_as_azkaban_runs_it_matches_the_local_run(dev_cluster: Cluster, spark, tmp_path: Path,
                                                                  hdfs_root: str) -> None:
    """The project built with --ship, every node run literally as its own process (a fresh
    spark-submit in YARN's cluster mode, a launcher client): drivers, executors and launcher tasks
    run the packed environment and import glmix from the shipped code, nothing from this checkout."""
    write_photon_dataset(tmp_path / "data", rows=5000, seed=9, variant="null", names=RENAMED)
    hdfs = storage_for(hdfs_root)
    for path in (tmp_path / "data").glob("[tv]*/*.avro"):
        hdfs.write_bytes(f"{hdfs_root}/data/{path.parent.name}/{path.name}", path.read_bytes())

    on_yarn = config(f"{hdfs_root}/data", f"{hdfs_root}/out", "yarn", "yarn")
    shipment = ship(on_yarn.needs_tensorflow)     # one worker computing with scipy: no TensorFlow to ship
    assert shipment.launcher_environment == shipment.spark_environment
    project = build_project(on_yarn, tmp_path / "yarn-project", shipment)
    # this machine as an Azkaban executor: the cluster's Spark client configuration, no glmix on a path
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "SPARK_CONF_DIR": str(dev_cluster.spark_conf_dir)}
    # the flow on the cluster mostly waits for containers: the probe and the local run go meanwhile
    # (outputs to files: a full pipe would stall them)
    found_at = f"{hdfs_root}/probe.json"
    flow = read_project(project)
    options = shlex.split(substitute(flow.config["glmix.spark.options"], flow.config, "probe"))
    commands = {"flow": [sys.executable, "-m", "glmix.cli", "flow", "run", str(project), "--literal"],
                "probe": [str(Path(sys.executable).parent / "spark-submit"), "--master", "yarn", "--deploy-mode",
                          "cluster", "--num-executors", "2", "--driver-memory", "512m", "--executor-memory", "512m",
                          *options, str(REPO / "tests" / "shipped_probe.py"), found_at]}
    with contextlib.ExitStack() as outputs:
        running = {name: subprocess.Popen(command, stdout=outputs.enter_context(open(tmp_path / f"{name}.out", "w")),
                                          stderr=subprocess.STDOUT, env=env) for name, command in commands.items()}
        codes = _local_run_meanwhile(tmp_path, running)
    assert codes["flow"] == 0, (tmp_path / "flow.out").read_text()[-3000:]
    assert is_published(f"{hdfs_root}/out/best")
    models, _ = read_game_model(f"{hdfs_root}/out/best")
    assert [m.name for m in models] == ["global", "per-user"]
    assert storage_for(f"{hdfs_root}/out/report/index.html").exists(f"{hdfs_root}/out/report/index.html")
    logs = {log.stem: log.read_text() for log in (project / ".glmix-run" / "logs").glob("*.log")}
    assert "(state: FINISHED)" in logs["index"] and "spark.yarn.archive=hdfs://" in logs["index"]
    assert not [name for name, text in logs.items() if "falling back to uploading libraries" in text]
    assert "Not copying hdfs://" in logs["index"] and shipment.spark_environment.split("/")[-1] in logs["index"]

    # where a driver and its executors found Python and glmix, under the same options
    assert codes["probe"] == 0, (tmp_path / "probe.out").read_text()[-3000:]
    found = json.loads(hdfs.read_bytes(found_at))
    for python, glmix_file in [found["driver"], *found["executors"]]:
        assert "/usercache/" in python and python.endswith(f"/{ENV_LINK}/bin/python")   # localized by YARN
        assert "/usercache/" in glmix_file and ".zip/glmix/" in glmix_file and not glmix_file.startswith(str(REPO / "glmix"))

    here = json.loads((tmp_path / "out" / "summary.json").read_text())
    remote = json.loads(hdfs.read_bytes(f"{hdfs_root}/out/summary.json"))
    for a, b in zip(remote["steps"], here["steps"], strict=True):
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-6)
    assert remote["steps"][1]["metrics"]["AUC"] > remote["steps"][0]["metrics"]["AUC"]
    assert not our_running_apps(dev_cluster.conf_dir)
