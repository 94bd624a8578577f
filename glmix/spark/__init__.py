"""glmix on Spark: session settings, the class archive local JVMs start from, reading examples,
indexing rows in Arrow, and the entry point and arguments every job in jobs/ shares."""

from __future__ import annotations

from glmix.spark.job import JobReport, read_report, run_main
from glmix.spark.job_args import EvaluateArgs, IndexArgs, PartitionArgs, PrepareArgs, ScoreArgs, TrainRandomEffectArgs
from glmix.spark.session import session, spark_submit_command, suits_quick_start

__all__ = ["EvaluateArgs", "IndexArgs", "JobReport", "PartitionArgs", "PrepareArgs", "ScoreArgs",
           "TrainRandomEffectArgs", "read_report", "run_main", "session", "spark_submit_command",
           "suits_quick_start"]
