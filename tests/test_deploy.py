"""Shipping glmix to a cluster (glmix.deploy): the code archive, the environment's requirements, the
options a shipped flow's commands carry, and a literal run of a flow (each node its own process)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

from cluster.devcluster import REPO
from glmix.deploy import ENV_LINK, Shipment, code_archive
from glmix.deploy.environment import LEFT_OUT, TENSORFLOW, environment_digest, requirements
from glmix.flow.azkaban import Flow, Node, read_project, write_project
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from launcher.spec import JobSpec
from tests.test_azkaban_loader import azkaban_load

SHIPMENT = Shipment("hdfs:///u/.glmix/spark/a-spark-jars.zip", "hdfs:///u/.glmix/envs/b-glmix-base-env.tar.gz",
                    "hdfs:///u/.glmix/envs/c-glmix-tensorflow-env.tar.gz", "hdfs:///u/.glmix/code/d-glmix-code.zip")


def test_code_archive_is_deterministic_and_imports_from_the_zip(tmp_path: Path) -> None:
    first = code_archive().read_bytes()
    assert code_archive().read_bytes() == first          # same content, same hash: uploaded once
    names = zipfile.ZipFile(code_archive()).namelist()
    assert {"glmix/__init__.py", "jobs/score.py", "launcher/task.py", "avro_schemas/Model.avsc"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # a process with the zip first on its path imports glmix from it and reads the schemas inside it
    probe = ("import sys, json; sys.path.insert(0, sys.argv[1]); import glmix.io.schemas as s; "
             "print(json.dumps([s.__file__, s.raw_schema('Model')['name']]))")
    result = subprocess.run([sys.executable, "-c", probe, str(code_archive())], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    where, name = json.loads(result.stdout)
    assert where.startswith(str(code_archive())) and name


def test_environment_leaves_out_what_only_the_submitting_machine_needs() -> None:
    names = [r.split("==")[0] for r in requirements("tensorflow")]
    assert "tensorflow" in names and "fastavro" in names and "skein" in names
    assert not set(names) & set(LEFT_OUT)
    assert all("==" in r for r in requirements("tensorflow"))   # pinned, as pyproject.toml pins them
    base = [r.split("==")[0] for r in requirements("base")]
    assert set(base) == set(names) - TENSORFLOW and "tensorflow" not in base and "tensorboardX" in base
    assert environment_digest("base") != environment_digest("tensorflow")


def test_the_launcher_gets_tensorflow_only_when_a_trainer_needs_it() -> None:
    movielens = GameConfig.from_yaml(REPO / "configs" / "movielens.yaml")   # a GLM fixed effect, 2 workers

    def variant(compute: str | None, workers: int) -> GameConfig:
        glm = movielens.coordinates["global"].model_copy(update={"compute": compute})
        launcher = movielens.resources.launcher.model_copy(update={"workers": workers})
        return movielens.model_copy(update={"coordinates": {**movielens.coordinates, "global": glm},
                                            "resources": movielens.resources.model_copy(update={"launcher": launcher})})

    assert variant(None, 1).needs_tensorflow                # the GLM computes with TensorFlow by default
    assert variant("scipy", 2).needs_tensorflow             # several workers: their all-reduce is TensorFlow's
    assert not variant("scipy", 1).needs_tensorflow


def test_shipped_options_reach_spark_and_the_launcher() -> None:
    spark = shlex.split(SHIPMENT.spark_options())
    assert f"spark.yarn.archive={SHIPMENT.spark_jars}" in spark
    assert spark[spark.index("--archives") + 1] == f"{SHIPMENT.spark_environment}#{ENV_LINK}"
    assert spark[spark.index("--py-files") + 1] == SHIPMENT.code
    assert f"spark.pyspark.python=./{ENV_LINK}/bin/python" in spark
    assert f"spark.pyspark.driver.python=./{ENV_LINK}/bin/python" in spark
    sets = shlex.split(SHIPMENT.launcher_options())[1::2]
    spec = JobSpec.from_dict({"name": "j", "tasks": {"worker": {"instances": 1, "command": "true"}}}, sets)
    assert spec.python is not None and spec.python.archive == SHIPMENT.launcher_environment and spec.code == SHIPMENT.code


def test_a_shipped_project_runs_in_cluster_mode_and_azkaban_loads_it(tmp_path: Path) -> None:
    config = GameConfig.from_yaml(REPO / "configs" / "movielens.yaml")
    plain = read_project(build_project(config, tmp_path / "plain"))
    project = build_project(config, tmp_path / "shipped", SHIPMENT)
    shipped = read_project(project)
    assert plain.config["spark.deploy.mode"] == "client" and "launcher.options" in plain.config
    assert shipped.config["spark.deploy.mode"] == "cluster"
    assert shipped.config["glmix.spark.options"] == SHIPMENT.spark_options()
    assert shipped.config["launcher.options"] == SHIPMENT.launcher_options()
    commands = {node.name: node.command for node in shipped.nodes}
    assert "--deploy-mode ${spark.deploy.mode}" in commands["index"] and "${glmix.spark.options}" in commands["index"]
    assert commands["p0-global-train"].endswith("${launcher.options}")
    assert azkaban_load([project])[project]["errors"] == []


def test_a_literal_run_gives_every_node_its_own_process(tmp_path: Path) -> None:
    """As Azkaban's command job type: no shell (a command is split into arguments), the project
    directory as working directory; a failing node's reason is the last ``error:`` line it printed."""
    python = sys.executable
    nodes = [Node("here", f"{python} -c \"import os; open('pid-here', 'w').write(str(os.getpid()))\""),
             Node("no-shell", "echo $HOME && false"),
             Node("fails", f"{python} -c \"print('error: day 2026-12-01 has no _SUCCESS'); raise SystemExit(3)\"",
                  ["here"])]
    project = write_project(tmp_path / "project", "literal", Flow("literal", nodes), {})
    results = {r.name: r for r in LocalRunner(project, literal=True).run()}
    assert results["here"].status == "succeeded"
    assert int((project / "pid-here").read_text()) != os.getpid()
    assert results["no-shell"].status == "succeeded"       # echo got '$HOME', '&&' and 'false' as arguments
    assert (project / ".glmix-run" / "logs" / "no-shell.log").read_text().splitlines()[1] == "$HOME && false"
    assert results["fails"].status == "failed" and results["fails"].error == "day 2026-12-01 has no _SUCCESS"


def test_an_upload_happens_once_per_content(tmp_path: Path) -> None:
    from glmix.deploy import upload_once

    local = tmp_path / "env.tar.gz"
    local.write_bytes(b"packed environment")
    root = str(tmp_path / "home")
    first = upload_once(local, "envs", root=root)
    assert upload_once(local, "envs", root=root) == first and Path(first).read_bytes() == b"packed environment"
    local.write_bytes(b"another environment")
    assert upload_once(local, "envs", root=root) != first                  # new content, new name
    assert sorted(p.name.endswith(".partial") for p in (tmp_path / "home" / "envs").iterdir()) == [False, False]
