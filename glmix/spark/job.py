"""What every Spark job shares: its entry point (arguments, session, one-line errors) and the JSON report."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from glmix.errors import GlmixError
from glmix.io.storage import join, storage_for
from glmix.spark.job_args import SparkJobArgs

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

A = TypeVar("A", bound=SparkJobArgs)

REPORT_NAME = "_report.json"


@dataclass
class JobReport:
    """Counters a job publishes next to its output (rows in/out, drops by reason, timings...)."""

    job: str
    params: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    counters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "params": self.params, "wall_seconds": round(time.monotonic() - self.started, 3),
                **self.counters}

    def write_into(self, directory: str) -> None:
        """Write into the (temporary) output directory, so it is published together with the data."""
        storage_for(directory).write_bytes(join(directory, REPORT_NAME),
                                           json.dumps(self.to_dict(), indent=2, default=str).encode())


def read_report(output: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(storage_for(output).read_bytes(join(output, REPORT_NAME)))
    return report


def get_spark(master: str | None, app_name: str) -> SparkSession:
    """The active session under spark-submit, or a configured one for `python -m jobs.X --master ...`."""
    from pyspark.sql import SparkSession

    from glmix.spark.session import JOB_DEFAULTS, session

    if master:
        return session(master, app_name)
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    given = spark.sparkContext.getConf()
    for key, value in JOB_DEFAULTS.items():
        if not given.contains(key):
            spark.conf.set(key, value)
    return spark


def run_main(args_type: type[A], run: Callable[[SparkSession, A], dict[str, Any]], doc: str | None,
             argv: list[str] | None = None) -> int:
    """Parse, run, print the report; a GlmixError becomes one line on stderr and exit code 1."""
    try:
        args = args_type.from_argv(argv, doc)
        report = run(get_spark(args.master, args_type.PROG), args)
    except GlmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0
