"""Schemas load from avro_schemas/ and round-trip through fastavro."""

from __future__ import annotations

import io

import fastavro
import pytest

from glmix.io.schemas import SCHEMA_FILES, parsed_schema, raw_schema, training_example_schema
from glmix.model.linear_model import LinearModel, read_models, write_models

SAMPLES = {
    "TrainingExample": {"uid": "u1", "label": 1.0, "features": [{"name": "age", "term": "25", "value": 1.0}],
                        "metadataMap": {"userId": "7"}, "weight": 2.0, "offset": -0.5},
    "Model": {"modelId": "global", "modelClass": "logistic_regression",
              "means": [{"name": "(INTERCEPT)", "term": "", "value": 0.1}],
              "variances": [{"name": "(INTERCEPT)", "term": "", "value": 0.01}], "lossFunction": "logistic"},
    "ScoringResult": {"uid": "u1", "label": 1.0, "weight": 1.0, "modelId": "game", "predictionScore": 0.7,
                      "coordinateScores": {"global": 0.5, "per-user": 0.2}, "metadataMap": None},
    "FeatureSummary": {"name": "age", "term": "25", "count": 10, "mean": 0.3, "variance": 0.21, "min": 0.0,
                       "max": 1.0, "nnz": 3},
    "EvaluationMetrics": {"modelId": "game", "dataset": "validation", "coordinate": "per-user", "pass": 1,
                          "rows": 100, "metrics": {"AUC": 0.75, "AUC:userId": 0.7}},
}


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_round_trip(name: str) -> None:
    buffer = io.BytesIO()
    fastavro.writer(buffer, parsed_schema(name), [SAMPLES[name]])
    buffer.seek(0)
    assert list(fastavro.reader(buffer)) == [SAMPLES[name]]


def test_photon_names_and_namespace() -> None:
    assert raw_schema("TrainingExample")["name"] == "TrainingExampleAvro"
    assert raw_schema("Model")["name"] == "BayesianLinearModelAvro"
    assert {f["name"] for f in raw_schema("Model")["fields"]} == {"modelId", "modelClass", "means", "variances",
                                                                  "lossFunction"}


def test_extended_training_example_has_bags_and_ids() -> None:
    schema = training_example_schema(("userFeatures",), ("userId",))
    record = dict(SAMPLES["TrainingExample"], userFeatures=[{"name": "g", "term": "M", "value": 1.0}], userId="u7")
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, [record])
    buffer.seek(0)
    assert list(fastavro.reader(buffer)) == [record]


def test_model_io_round_trip(tmp_path) -> None:
    models = [LinearModel("u1", "poisson", {("(INTERCEPT)", ""): 0.5, ("genre", "Drama"): -1.25},
                          {("(INTERCEPT)", ""): 0.1, ("genre", "Drama"): 0.2}),
              LinearModel("u2", "linear", {("x", ""): 3.0})]
    write_models(str(tmp_path / "m"), models)
    assert list(read_models(str(tmp_path / "m"))) == models
