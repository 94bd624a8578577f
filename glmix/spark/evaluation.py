"""Evaluation of scored data (ScoringResult Avro): metrics global and per entity, published as
JSON and EvaluationMetrics Avro. The evaluate job runs it, and so does the score job when a flow
step scores and evaluates in one Spark application (jobs/evaluate.py says what is computed and how).
Output (published atomically): OUT/metrics.json, OUT/metrics/*.avro, OUT/_report.json."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from glmix.errors import ConfigError, DataError
from glmix.glm.metrics import Evaluator, evaluate_all
from glmix.io.avro import write_avro_parts
from glmix.io.schemas import parsed_schema
from glmix.io.storage import join, publish_atomically, qualified, storage_for
from glmix.spark.job import JobReport

METRICS_FILE = "metrics.json"


def evaluate(spark: SparkSession, scores: str, output: str, evaluators: list[str], coordinate: str | None = None,
             pass_index: int | None = None, dataset: str | None = None) -> dict[str, Any]:
    try:
        parsed = [Evaluator.parse(e) for e in evaluators]
    except ValueError as exc:
        raise ConfigError(f"--evaluators: {exc}") from None
    scores, output = qualified(scores), qualified(output)
    report = JobReport("evaluate", {"scores": scores, "output": output, "evaluators": evaluators,
                                    "coordinate": coordinate, "pass": pass_index})
    group_fields = sorted({e.group for e in parsed if e.group})
    frame = spark.read.format("avro").load(scores)
    table = frame.select("label", F.col("predictionScore").alias("score"),
                         F.coalesce("weight", F.lit(1.0)).alias("weight"), "modelId",
                         *[F.col("metadataMap").getItem(g).alias(f"_group_{g}") for g in group_fields]).toArrow()
    if table.num_rows == 0:
        raise DataError("no scored rows to evaluate", path=scores)
    y, score, weight = (table.column(c).to_numpy() for c in ("label", "score", "weight"))

    def ids_of(evaluator: Evaluator) -> np.ndarray:
        ids = table.column(f"_group_{evaluator.group}")
        if ids.null_count:
            raise DataError(f"{ids.null_count} scored row(s) have no '{evaluator.group}' in metadataMap, "
                            f"needed by {evaluator.name}", path=scores, field=f"metadataMap.{evaluator.group}")
        found: np.ndarray = ids.to_numpy(zero_copy_only=False)
        return found

    metrics, groups = evaluate_all(parsed, y, score, weight, ids_of)
    record = {"modelId": table.column("modelId")[0].as_py(), "dataset": dataset or scores, "coordinate": coordinate,
              "pass": pass_index, "rows": len(y), "metrics": metrics}
    with publish_atomically(output) as tmp:
        readable = {**record, "metrics": {k: _finite_or_none(v) for k, v in metrics.items()}, "groups": groups}
        storage_for(tmp).write_bytes(join(tmp, METRICS_FILE), json.dumps(readable, indent=2).encode())
        write_avro_parts(join(tmp, "metrics"), parsed_schema("EvaluationMetrics"), [record])
        report.counters.update({"rows": len(y), "metrics": metrics, "groups": groups})
        report.write_into(tmp)
    return report.to_dict()


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. AUC of one class) is null."""
    return value if math.isfinite(value) else None


def read_metrics(output: str) -> dict[str, Any]:
    metrics: dict[str, Any] = json.loads(storage_for(output).read_bytes(join(output, METRICS_FILE)))
    return metrics
