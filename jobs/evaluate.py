"""Evaluation: metrics of scored data, global and per entity, as JSON and EvaluationMetrics Avro.

    spark-submit jobs/evaluate.py --scores SCORES --output OUT \
        --evaluators AUC,AUPR,LOGISTIC_LOSS,AUC:userId,PRECISION@5:userId [--coordinate per-user --pass 0]

Reads ScoringResult Avro (jobs/score); the metrics are computed on the driver from four columns
(label, score, weight, group id: about 32 bytes a row, so ~3 GB of driver memory per 100M rows). Ungrouped metrics (AUC, AUPR, LOGISTIC_LOSS, RMSE,
POISSON_LOSS) use every row, weighted. A grouped metric ``METRIC:idField`` is computed per entity
(the id from ``metadataMap``) and averaged over the entities where it is defined, as Photon ML's
``AUC:<idTag>``: AUC needs both labels in the group, PRECISION@k needs a positive in it. The
number of groups that counted is reported next to the value.

Output (published atomically): OUT/metrics.json, OUT/metrics/*.avro (EvaluationMetrics), OUT/_report.json.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from glmix.avro_io import write_avro_parts
from glmix.errors import ConfigError, DataError
from glmix.game_config import EVALUATOR
from glmix.job import JobReport, add_spark_arguments, job_parser, run_main
from glmix.metrics import auc_per_group
from glmix.metrics import evaluate as evaluate_one
from glmix.schemas import parsed_schema
from glmix.storage import join, publish_atomically, qualified, storage_for

METRICS_FILE = "metrics.json"


def grouped_metric(metric: str, groups: np.ndarray, y: np.ndarray, score: np.ndarray,
                   weight: np.ndarray) -> tuple[float, int]:
    """Mean of ``metric`` over the groups where it is defined, and how many groups that is."""
    if metric == "AUC":
        values = auc_per_group(np.unique(groups, return_inverse=True)[1], y, score, weight)
        defined = values[~np.isnan(values)]
        return (float(np.mean(defined)) if len(defined) else float("nan")), len(defined)
    order = np.argsort(groups, kind="stable")
    boundaries = np.flatnonzero(groups[order][1:] != groups[order][:-1]) + 1
    values = []
    for rows in np.split(order, boundaries):
        labels = y[rows]
        if metric in ("AUC", "AUPR") and len(np.unique(labels)) < 2:
            continue
        if metric.startswith("PRECISION@") and not np.any(labels > 0):
            continue
        values.append(evaluate_one(metric, labels, score[rows], weight[rows]))
    return (float(np.mean(values)) if values else float("nan")), len(values)


def evaluate(spark: SparkSession, scores: str, output: str, evaluators: list[str], coordinate: str | None = None,
             pass_index: int | None = None, dataset: str | None = None) -> dict[str, Any]:
    parsed = [EVALUATOR.match(e) for e in evaluators]
    for evaluator, match in zip(evaluators, parsed, strict=True):
        if not match:
            raise ConfigError(f"--evaluators: unknown evaluator {evaluator!r}")
    scores, output = qualified(scores), qualified(output)
    report = JobReport("evaluate", {"scores": scores, "output": output, "evaluators": evaluators,
                                    "coordinate": coordinate, "pass": pass_index})
    group_fields = sorted({m["group"] for m in parsed if m["group"]})
    frame = spark.read.format("avro").load(scores)
    table = frame.select("label", F.col("predictionScore").alias("score"),
                         F.coalesce("weight", F.lit(1.0)).alias("weight"), "modelId",
                         *[F.col("metadataMap").getItem(g).alias(f"_group_{g}") for g in group_fields]).toArrow()
    if table.num_rows == 0:
        raise DataError("no scored rows to evaluate", path=scores)
    y, score, weight = (table.column(c).to_numpy() for c in ("label", "score", "weight"))
    metrics: dict[str, float] = {}
    groups: dict[str, int] = {}
    for evaluator, match in zip(evaluators, parsed, strict=True):
        if match["group"]:
            ids = table.column(f"_group_{match['group']}")
            if ids.null_count:
                raise DataError(f"{ids.null_count} scored row(s) have no '{match['group']}' in metadataMap, "
                                f"needed by {evaluator}", path=scores, field=f"metadataMap.{match['group']}")
            metrics[evaluator], groups[evaluator] = grouped_metric(
                match["metric"], ids.to_numpy(zero_copy_only=False), y, score, weight)
        else:
            metrics[evaluator] = evaluate_one(evaluator, y, score, weight)
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
    return json.loads(storage_for(output).read_bytes(join(output, METRICS_FILE)))


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("evaluate", __doc__)
    parser.add_argument("--scores", required=True, help="ScoringResult Avro (jobs/score output for one dataset)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--evaluators", default="AUC", help="comma-separated, e.g. AUC,LOGISTIC_LOSS,AUC:userId")
    parser.add_argument("--coordinate", help="the coordinate last updated (recorded with the metrics)")
    parser.add_argument("--pass", dest="pass_index", type=int, help="the coordinate-descent pass (recorded)")
    parser.add_argument("--dataset", help="a name for the data (default: the scores path)")
    add_spark_arguments(parser)
    return parser


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    return evaluate(spark, args.scores, args.output, [e for e in args.evaluators.split(",") if e],
                    args.coordinate, args.pass_index, args.dataset)


if __name__ == "__main__":
    raise SystemExit(run_main(build_parser(), run))
