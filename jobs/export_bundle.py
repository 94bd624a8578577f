"""Export a GAME model as a serving bundle (glmix.serving.bundle): the fixed effects as compact
files, each random effect's entities as sharded read-only LMDB stores built on the executors.

    spark-submit jobs/export_bundle.py (--model OUTPUT/best | --registry ROOT --name MODEL [--version N]) \
        --output BUNDLE [--shards 8]

Published atomically (BUNDLE/_SUCCESS); BUNDLE/_report.json has each coordinate's features,
entities and seconds.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from glmix.serving.export import ExportArgs, export_bundle
from glmix.spark.job import run_main

ARGS = ExportArgs


def run(spark: SparkSession, args: ExportArgs) -> dict[str, Any]:
    return export_bundle(spark, args)


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
