"""GLM models as Avro (Photon ML's BayesianLinearModelAvro): coefficients keyed by (name, term)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from glmix.io.avro import read_avro_records, write_avro_parts
from glmix.io.schemas import parsed_schema

FeatureKey = tuple[str, str]

MODEL_CLASS = {"logistic": "logistic_regression", "linear": "linear_regression", "poisson": "poisson_regression"}
LOSS_FUNCTION = {"logistic": "logistic", "linear": "squared", "poisson": "poisson"}
TASK_OF_LOSS = {loss: task for task, loss in LOSS_FUNCTION.items()}


@dataclass
class LinearModel:
    """One GLM: the fixed effect (model_id names the coordinate) or one entity's random effect."""

    model_id: str
    task: str
    means: dict[FeatureKey, float]
    variances: dict[FeatureKey, float] | None = None

    def to_record(self) -> dict[str, Any]:
        def ntv(values: dict[FeatureKey, float]) -> list[dict[str, Any]]:
            return [{"name": n, "term": t, "value": float(v)} for (n, t), v in values.items()]

        return {"modelId": self.model_id, "modelClass": MODEL_CLASS[self.task], "means": ntv(self.means),
                "variances": None if self.variances is None else ntv(self.variances),
                "lossFunction": LOSS_FUNCTION[self.task]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LinearModel:
        def keyed(values: list[dict[str, Any]]) -> dict[FeatureKey, float]:
            return {(v["name"], v["term"]): v["value"] for v in values}

        variances = record.get("variances")
        return cls(model_id=record["modelId"], task=TASK_OF_LOSS.get(record.get("lossFunction") or "", "logistic"),
                   means=keyed(record["means"]), variances=None if variances is None else keyed(variances))


def write_models(directory: str, models: Iterable[LinearModel], rows_per_file: int = 200_000) -> list[str]:
    """Write models into part files of a (temporary, to-be-published) directory."""
    return write_avro_parts(directory, parsed_schema("Model"), (m.to_record() for m in models), rows_per_file)


def read_models(uri: str) -> Iterator[LinearModel]:
    for record in read_avro_records(uri):
        yield LinearModel.from_record(record)
