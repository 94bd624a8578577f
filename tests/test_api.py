"""The notebook API (issue 25): the example notebook executed end to end in a real Jupyter kernel
(nbclient), its outputs checked against what the flow's own files say, and the API's answers
checked against independent readings of the same data and model."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from glmix import GameConfig, GameEstimator, GameModel, read_dataset
from glmix.errors import ConfigError
from glmix.io.avro import read_avro_records
from glmix.io.examples import ExampleReader
from glmix.model.linear_model import read_models

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "movielens.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    work = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["GLMIX_NOTEBOOK_DIR"] = str(work)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    finally:
        del os.environ["GLMIX_NOTEBOOK_DIR"]
    return notebook, work


def _outputs(notebook: nbformat.NotebookNode, source_start: str) -> list[dict]:
    cell = next(c for c in notebook.cells if c.cell_type == "code" and source_start in c.source)
    return list(cell.outputs)


def _text(outputs: list[dict], kind: str = "text/plain") -> str:
    """A cell's value as ``kind`` (not the progress lines it displayed while running)."""
    return "".join(o["data"].get(kind, "") for o in outputs if o.output_type == "execute_result")


def test_the_notebook_runs_and_shows_what_the_flow_computed(executed: tuple[nbformat.NotebookNode, Path]) -> None:
    notebook, work = executed
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4    # rows per user, caterpillar, ROC, calibration

    # the dataset's summary: the rows and entities an independent reader counts
    reader = ExampleReader(bags=("features", "userFeatures", "movieFeatures"), entity_fields=("userId", "movieId"))
    rows = list(reader.read(str(work / "data" / "train")))
    summary = _text(_outputs(notebook, "train = read_dataset"), "text/html")
    assert f"{len(rows):,} rows" in summary and f"<td>userId</td><td>{len({r.ids['userId'] for r in rows}):,}</td>" in summary

    # the step-by-step metrics are the flow's evaluation's, and the per-user effect helps
    metrics = {s: json.loads(next((work / "output").glob(f"run-0/pass-0/{s}.metrics/metrics.json")).read_text())["metrics"]
               for s in ("global", "per-user")}
    assert _text(_outputs(notebook, "global_only =")) == repr(metrics["global"])
    assert _text(_outputs(notebook, "with_users =")) == repr(metrics["per-user"])
    assert metrics["per-user"]["AUC"] > metrics["global"]["AUC"] + 0.01
    assert "<h3>Fixed effect global</h3>" in _text(_outputs(notebook, "model = estimator.fit()"), "text/html")
    progress = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                       for o in _outputs(notebook, "global_only =") if o.output_type != "execute_result")
    assert "p0-global-train" in progress and "succeeded" in progress     # the runner's progress, in the notebook
    assert (work / "notebook.yaml").exists() and GameConfig.from_yaml(work / "notebook.yaml").name == "notebook"


def test_api_answers_equal_independent_readings(executed: tuple[nbformat.NotebookNode, Path], spark) -> None:
    _, work = executed
    train = read_dataset(str(work / "data" / "train"), spark=spark)
    assert train.bags == ("features", "userFeatures", "movieFeatures") and train.entity_fields == ("userId", "movieId")
    reader = ExampleReader(bags=("movieFeatures",), entity_fields=("userId",))
    examples = list(reader.read(str(work / "data" / "train")))
    counted = Counter((n, t) for e in examples for n, t, _ in e.bags["movieFeatures"])
    features = train.features("movieFeatures")
    assert {(r.name, r.term): r.count for r in features.itertuples()} == counted
    assert dict(zip(train.entities("userId")["entity"], train.entities("userId")["rows"], strict=True)) == \
        Counter(e.ids["userId"] for e in examples)

    model = GameModel.load(str(work / "output" / "best"))
    per_user = model.coefficients("per-user")
    truth = {(m.model_id, n, t): v for m in read_models(str(work / "output" / "best" / "random-effect" / "per-user"
                                                            / "coefficients")) for (n, t), v in m.means.items()}
    assert {(r.entity, r.name, r.term): r.value for r in per_user.itertuples()} == truth
    assert per_user["std_error"].notna().all()      # trained with variances: intervals in the caterpillar
    validation = read_dataset(str(work / "data" / "validation"), spark=spark)
    scored = model.score(validation)
    best = json.loads((work / "output" / "summary.json").read_text())
    chosen = best["steps"][best["best"]]
    flow_scores = {r["uid"]: r["predictionScore"] for r in read_avro_records(str(
        work / "output" / f"run-{chosen['run']}" / f"pass-{chosen['pass']}" / f"{chosen['coordinate']}.scores"
        / "validation"))}
    assert dict(zip(scored["uid"], scored["score"], strict=True)) == pytest.approx(flow_scores, abs=1e-12)
    assert model.evaluate(validation, ("AUC", "AUC:userId")) == pytest.approx(chosen["metrics"], rel=1e-12)

    with pytest.raises(ConfigError, match="no bag 'items'; this dataset's bags: features, userFeatures"):
        train.features("items")
    with pytest.raises(ConfigError, match="no coordinate 'per-item'; this model's: global, per-user"):
        model.coefficients("per-item")
    with pytest.raises(ConfigError, match="has no model for entity 'nobody'"):
        model.coefficients("per-user", entity="nobody")
    again = GameEstimator(GameConfig.from_yaml(work / "notebook.yaml"), work / "project")   # the notebook's flow
    assert list(again.steps()["done"]) == [True, True]
    with pytest.raises(ConfigError, match="every update of global in the config's passes has run"):
        again.fit_coordinate("global")
    with pytest.raises(ConfigError, match="no coordinate 'per-movie'; the config's: global, per-user"):
        again.fit_coordinate("per-movie")


@pytest.mark.integration
def test_a_dataset_on_hdfs_reads_as_the_local_one(hdfs_root: str, spark, tmp_path: Path) -> None:
    from glmix.data.synthetic import generate, movielens_spec
    from glmix.io.storage import copy_tree

    generate(movielens_spec(rows=1500, seed=4), str(tmp_path / "data"))
    copy_tree(str(tmp_path / "data" / "train"), f"{hdfs_root}/train")
    local, remote = read_dataset(str(tmp_path / "data" / "train"), spark=spark), read_dataset(f"{hdfs_root}/train",
                                                                                              spark=spark)
    assert remote.summary().rows == local.summary().rows and remote.summary().entities == local.summary().entities
    pd.testing.assert_frame_equal(remote.features("features"), local.features("features"), check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(remote.entities("userId"), local.entities("userId"))
