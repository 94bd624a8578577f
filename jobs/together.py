"""Several Spark jobs in one Spark application: one flow node, one application.

    spark-submit jobs/together.py prepare_fixed_effect --input TRAIN ... --and prepare_fixed_effect --input VALID ...
    spark-submit jobs/together.py train_random_effect --data PARTS ... --then score --data validation=VALID ...

On YARN every application pays for its containers before any work (a driver, then executors: ~30 s
on a small cluster, whatever the job's size), so a flow's nodes bundle the stages that belong
together: both splits' fixed-effect preparation, every random effect's partitioning, a random
effect's training and the scoring of the model it made.

Jobs joined by ``--and`` run side by side, each in a thread of its own on the one session (as the
local runner runs a flow's ready nodes); ``--then`` waits for every job before it. Each job reads
its own arguments (``jobs/X.py --help``); ``--master`` (plain ``python``) comes before the first
job. Every job publishes its output atomically, so a job that fails leaves the others' outputs
whole; the node fails once the jobs beside it finished, with the first failure's one-line reason.

Output: each job's own; the printed report lists theirs in order.
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql import SparkSession

from glmix.spark.job import run_main
from glmix.spark.job_args import SparkJobArgs, TogetherArgs

ARGS = TogetherArgs  # this job's command line (glmix.spark.job_args)


def run_job(spark: SparkSession, job: SparkJobArgs, group: str | None) -> dict[str, Any]:
    """One job, its Spark jobs grouped as ``NODE:JOB`` (the node's group, when the runner set one)."""
    spark.sparkContext.setJobGroup(f"{group}:{job.PROG}" if group else job.PROG, job.PROG)
    report: dict[str, Any] = importlib.import_module(f"jobs.{job.PROG}").run(spark, job)
    return report


def run(spark: SparkSession, args: TogetherArgs) -> dict[str, Any]:
    group = spark.sparkContext.getLocalProperty("spark.jobGroup.id")
    reports: list[dict[str, Any]] = []
    for jobs in args.groups:
        with ThreadPoolExecutor(len(jobs)) as pool:
            running = [pool.submit(run_job, spark, job, group) for job in jobs]
            failures = [error for error in (f.exception() for f in running) if error is not None]
            if failures:
                raise failures[0]
            reports += [f.result() for f in running]
    return {"job": TogetherArgs.PROG, "jobs": reports}


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
