"""The fixed-effect trainer as a two-worker YARN application on HDFS data, against a local run; a worker
dies in the first attempt, the second runs on the other node and resumes from the checkpoint on HDFS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from cluster.devcluster import Cluster
from glmix.data.synthetic import generate, generic_spec
from glmix.io.storage import copy_tree, is_published, storage_for
from glmix.settings import FeatureShard
from glmix.train.fixed_effect import FixedEffectConfig, Trainer, read_model
from jobs.index_features import index_features
from jobs.prepare_fixed_effect import prepare_fixed_effect
from launcher.spec import JobSpec
from launcher.yarn import YarnBackend, read_task_results
from tests.conftest import our_running_apps

DIES = Path(__file__).parent / "launcher_jobs" / "fixed_effect_dies.py"


def test_two_workers_on_yarn_match_one_local_process(dev_cluster: Cluster, spark, tmp_path: Path,
                                                     hdfs_root: str) -> None:
    spec = generic_spec(rows=5000, users=30, items=10, context_dimension=50, context_nnz=5, seed=8)
    generate(spec.model_copy(update={"validation_fraction": 0.0}), str(tmp_path / "data"))
    index_features(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"),
                   FeatureShard(name="g", bags=("features",)))
    prepare_fixed_effect(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"), str(tmp_path / "fe"), 3)
    copy_tree(str(tmp_path / "index"), f"{hdfs_root}/index")
    copy_tree(str(tmp_path / "fe"), f"{hdfs_root}/fe")
    flags = "--task logistic --l2 1.0 --ftol 0 --gtol 1e-9 --validation-every 0 --checkpoint-every 5"
    command = (f"{sys.executable} {DIES} --index {hdfs_root}/index --train {hdfs_root}/fe "
               f"--output {hdfs_root}/model {flags}")
    job = JobSpec.from_dict({"name": "glmix-it-fixed-effect", "timeouts": {"registration": 120}, "max_attempts": 2,
                             "tasks": {"worker": {"instances": 2, "memory": 1536, "command": command}}})
    result = YarnBackend().submit(job)
    assert result.final_status == "SUCCEEDED" and result.attempts == 2, result.failed
    assert is_published(f"{hdfs_root}/model")
    first, second = result.attempt_ids
    died = read_task_results(first)["worker:1"]
    assert died["exit_code"] != 0 and died["host"] not in {r["host"] for r in read_task_results(second).values()}
    report = json.loads(storage_for(hdfs_root).read_bytes(f"{hdfs_root}/model/_report.json"))
    assert report["resumed_from_iteration"] == 5          # the checkpoint the chief wrote before worker 1 died
    local = Trainer(FixedEffectConfig(task="logistic", l2=1.0, ftol=0, gtol=1e-9, validation_every=0),
                    str(tmp_path / "index"), str(tmp_path / "fe"), str(tmp_path / "model")).run().report
    assert local["converged"]
    on_yarn, here = read_model(f"{hdfs_root}/model").means, read_model(str(tmp_path / "model")).means
    assert max(abs(on_yarn[k] - here[k]) for k in here) < 1e-6
    assert np.isfinite(list(on_yarn.values())).all()
    assert not our_running_apps(dev_cluster.conf_dir)
