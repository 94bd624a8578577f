"""Deep (Keras) and external fixed effects in the GAME flow, on data with a nonlinear global effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glmix.data.sparse_rows import SparseRows
from glmix.data.synthetic import generate, generic_spec
from glmix.errors import ConfigError
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.train.keras_fixed_effect import padded


def test_padded_rows_keep_every_feature() -> None:
    rows = SparseRows(uid=np.array(["a", "b", "c"], dtype=object), label=np.zeros(3), weight=np.ones(3),
                      offset=np.zeros(3), indptr=np.array([0, 2, 2, 5]), indices=np.array([0, 4, 1, 2, 3], np.int32),
                      values=np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    indices, values = padded(rows)
    assert indices.tolist() == [[0, 4, 0], [0, 0, 0], [1, 2, 3]]
    assert values.tolist() == [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 4.0, 5.0]]


def base(data: Path, output: Path, fixed: dict) -> dict:
    return {"name": "deep", "task": "logistic",
            "input": {"train": str(data / "train"), "validation": str(data / "validation")}, "output": str(output),
            "feature_shards": [{"name": "global", "bags": ["features", "userFeatures", "itemFeatures"]},
                               {"name": "item", "bags": ["itemFeatures"]}],
            "coordinates": {"global": fixed,
                            "per-user": {"type": "random", "shard": "item", "entity_field": "userId", "l2": 3.0}},
            "update_sequence": ["global", "per-user"], "evaluators": ["AUC"],
            "resources": {"spark": {"partitions": 2}}, "flow": {"retries": 0}}


def run_flow(tmp_path: Path, name: str, config: dict) -> dict:
    project = build_project(GameConfig.from_dict(config).resolved(tmp_path), tmp_path / f"{name}-project")
    results = LocalRunner(project).run()
    assert results[-1].status == "succeeded", [(r.name, r.error) for r in results if r.status == "failed"]
    summary = json.loads((Path(config["output"]) / "summary.json").read_text())
    return {s["coordinate"]: s["metrics"]["AUC"] for s in summary["steps"]}


def test_deep_beats_glm_and_external_reproduces_it(tmp_path: Path, spark) -> None:
    spec = generic_spec(rows=16_000, users=60, items=20, context_dimension=10, context_nnz=10, seed=3)
    generate(spec.model_copy(update={"nonlinear_std": 2.0}), str(tmp_path / "data"))
    glm = run_flow(tmp_path, "glm", base(tmp_path / "data", tmp_path / "glm", {"type": "fixed", "shard": "global", "compute": "scipy"}))
    keras = {"type": "fixed", "shard": "global", "model_type": "keras",
             "keras": {"epochs": 8, "batch_size": 256, "model_args": {"hidden": [32, 16]}}}
    deep = run_flow(tmp_path, "deep", base(tmp_path / "data", tmp_path / "deep", keras))
    assert deep["global"] > glm["global"] + 0.05        # the global effect is nonlinear
    assert deep["per-user"] > glm["per-user"]           # and stays ahead with random effects on top

    scores = tmp_path / "deep" / "run-0" / "pass-0" / "global" / "scores"
    external = {"type": "external", "scores": {"train": str(scores / "train"), "validation": str(scores / "validation")}}
    config = base(tmp_path / "data", tmp_path / "external", external)
    assert run_flow(tmp_path, "external", config) == deep   # the same scores give exactly the same model
    assert (tmp_path / "external" / "best" / "fixed-effect" / "global" / "scores" / "validation").is_dir()
    assert (tmp_path / "deep" / "best" / "fixed-effect" / "global" / "saved_model" / "saved_model.pb").is_file()


def test_external_scores_missing_a_row_are_reported(tmp_path: Path, spark) -> None:
    generate(generic_spec(rows=2000, users=10, items=5, context_dimension=5, context_nnz=2, seed=1),
             str(tmp_path / "data"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split in ("train", "validation"):
        (tmp_path / "ext" / split).mkdir(parents=True)
        pq.write_table(pa.table({"uid": ["0", "1"], "score": [0.1, 0.2]}), tmp_path / "ext" / split / "p.parquet")
    config = base(tmp_path / "data", tmp_path / "out", {"type": "external", "scores": {
        "train": str(tmp_path / "ext" / "train"), "validation": str(tmp_path / "ext" / "validation")}})
    project = build_project(GameConfig.from_dict(config), tmp_path / "project")
    results = LocalRunner(project).run()
    assert results[-1].name == "p0-global" and results[-1].status == "failed"
    assert "row(s) have no score from coordinate global (e.g. uid" in results[-1].error


@pytest.mark.parametrize("coordinate, message", [
    ({"type": "random", "shard": "item", "entity_field": "userId", "model_type": "keras"}, "keras is for the fixed"),
    ({"type": "external", "shard": "item"}, "scores is set for, and only for, an external"),
    ({"type": "fixed", "shard": "global", "keras": {"epochs": 2}}, "keras settings need model_type: keras"),
])
def test_coordinate_type_errors(tmp_path: Path, coordinate: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GameConfig.from_dict(base(tmp_path, tmp_path, coordinate))


def test_two_workers_score_every_row_of_an_uneven_split(tmp_path: Path, spark) -> None:
    """Each worker scores all of its rows, however the rows split (Keras' predict under the
    multi-worker strategy dropped a row of a worker holding 811)."""
    from glmix.io.parquet import read_parquet
    from glmix.settings import FeatureShard
    from jobs.index_features import index_features
    from jobs.prepare_fixed_effect import prepare_fixed_effect
    from launcher.local import LocalBackend
    from launcher.spec import JobSpec

    generate(generic_spec(rows=2_000, users=30, items=10, context_dimension=10, context_nnz=5, seed=5),
             str(tmp_path / "data"))
    index_features(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"),
                   FeatureShard(name="global", bags=("features", "itemFeatures")))
    report = prepare_fixed_effect(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"),
                                  str(tmp_path / "fe"), 2, task="logistic")
    assert report["rows_out"] % 2 == 1, "an odd count, so the two workers' shares differ"
    out = tmp_path / "model"
    command = (f"python -m glmix.train.keras_fixed_effect --index {tmp_path / 'index'} --train {tmp_path / 'fe'} "
               f"--output {out} --task logistic --epochs 1 --batch-size 64 --backup-dir {tmp_path / 'backup'}")
    result = LocalBackend(tmp_path / "runs").submit(JobSpec.from_dict(
        {"name": "uneven", "tasks": {"worker": {"instances": 2, "memory": 1024, "command": command}}}))
    assert result.final_status == "SUCCEEDED", result.failed
    scores = read_parquet(str(out / "scores" / "train"))
    assert scores.num_rows == report["rows_out"] and len(set(scores.column("uid").to_pylist())) == scores.num_rows
