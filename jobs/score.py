"""Scoring: apply a GAME model (fixed effect + every random effect) to Avro examples.

    spark-submit jobs/score.py --data validation=DATA [--data train=DATA2] --output OUT \
        (--model GAME_MODEL_DIR | --model-pointer FILE.json | --fixed-effect global=DIR --random-effect per-user=userId=DIR ...)

Each row is scored as glmix.spark.scoring describes (the notebook API's GameModel.score runs the
same code).

Output (published atomically): OUT/NAME/*.avro for every ``--data NAME=...`` (ScoringResult Avro:
uid, label, weight, predictionScore, coordinateScores, metadataMap with the entity ids) and
OUT/_report.json (rows scored, and per coordinate how many rows had a model). The entity ids of
the random effects, and of ``--id-fields``, are copied into ``metadataMap``.

With ``--evaluators E ... --metrics METRICS`` (one ``--data``), the scores are then evaluated as
jobs/evaluate does, in the same Spark application: a flow step scores and evaluates in one node.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from glmix.io.storage import join
from glmix.model.game_model import CoordinateModel, read_game_model
from glmix.spark.evaluation import evaluate
from glmix.spark.job import run_main
from glmix.spark.job_args import ScoreArgs
from glmix.spark.scoring import pointed_model, score

ARGS = ScoreArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: ScoreArgs) -> dict[str, Any]:
    model = pointed_model(args.model_pointer) if args.model_pointer else args.model
    models = read_game_model(model)[0] if model else []
    models += [CoordinateModel.from_flag("fixed", v) for v in args.fixed_effect]
    models += [CoordinateModel.from_flag("random", v) for v in args.random_effect]
    models += [CoordinateModel.from_flag("scores", v) for v in args.scores]
    report = score(spark, args.datasets(), models, args.output, args.model_id, args.columns,
                   args.bad_records, args.files, tuple(args.id_fields), args.dated())
    if args.metrics is None:
        return report
    (name,) = args.datasets()
    return {**report, "evaluation": evaluate(spark, join(args.output, name), args.metrics, args.evaluators,
                                             args.coordinate, args.pass_index)}


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
