"""Evaluation: metrics of scored data, global and per entity, as JSON and EvaluationMetrics Avro.

    spark-submit jobs/evaluate.py --scores SCORES --output OUT \
        --evaluators AUC,AUPR,LOGISTIC_LOSS,AUC:userId,PRECISION@5:userId [--coordinate per-user --pass-index 0]

Reads ScoringResult Avro (jobs/score); the metrics are computed on the driver from four columns
(label, score, weight, group id: about 32 bytes a row, so ~3 GB of driver memory per 100M rows). Ungrouped metrics (AUC, AUPR, LOGISTIC_LOSS, RMSE,
POISSON_LOSS) use every row, weighted. A grouped metric ``METRIC:idField`` is computed per entity
(the id from ``metadataMap``) and averaged over the entities where it is defined, as Photon ML's
``AUC:<idTag>``: AUC needs both labels in the group, PRECISION@k needs a positive in it. The
number of groups that counted is reported next to the value.

Output (published atomically): OUT/metrics.json, OUT/metrics/*.avro (EvaluationMetrics), OUT/_report.json.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from glmix.spark.evaluation import evaluate
from glmix.spark.job import run_main
from glmix.spark.job_args import EvaluateArgs

ARGS = EvaluateArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: EvaluateArgs) -> dict[str, Any]:
    return evaluate(spark, args.scores, args.output, args.evaluators, args.coordinate, args.pass_index, args.dataset)


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
