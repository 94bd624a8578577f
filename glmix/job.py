"""What every Spark job shares: argument handling, the session, one-line errors, the JSON report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glmix.errors import GlmixError
from glmix.storage import join, storage_for

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
    return json.loads(storage_for(output).read_bytes(join(output, REPORT_NAME)))


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose help is the job module's docstring, kept as written."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_spark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", help="Spark master when run with plain python (spark-submit sets its own)")


def get_spark(master: str | None, app_name: str):
    """The active session under spark-submit, or a configured one for `python -m jobs.X --master ...`."""
    from pyspark.sql import SparkSession

    from glmix.spark import session

    if master:
        return session(master, app_name)
    return SparkSession.builder.appName(app_name).getOrCreate()


def run_main(parser: argparse.ArgumentParser, run: Callable[[Any, argparse.Namespace], dict[str, Any]],
             argv: list[str] | None = None) -> int:
    """Parse, run, print the report; a GlmixError becomes one line on stderr and exit code 1."""
    args = parser.parse_args(argv)
    try:
        spark = get_spark(args.master, parser.prog)
        report = run(spark, args)
    except GlmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, default=str))
    return 0
