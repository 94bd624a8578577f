"""The data gate: the training window's statistics against the production version's training window.

    spark-submit jobs/data_gate.py --input DATA --bags features userFeatures --entity-fields userId \
        --registry REGISTRY --model NAME --output OUT [--gate '{"psi": 0.25, "action": "fail"}']

Output (published atomically, also when the gate fails): OUT/stats.json (this window's statistics,
kept with the version the flow registers), OUT/data-gate.json (each check, the features that moved),
OUT/index.html (the same with the moved features' histograms). With ``action: fail`` a violation
ends the job with one line naming the checks and the report; with ``warn`` it only reports.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession

from glmix.errors import GlmixError
from glmix.io.storage import join, qualified
from glmix.registry.data_gate import judge, production_data, publish
from glmix.registry.store import ModelRegistry
from glmix.spark.data_stats import Reference, window_statistics
from glmix.spark.input import InputSpec
from glmix.spark.job import run_main
from glmix.spark.job_args import DataGateArgs

ARGS = DataGateArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: DataGateArgs) -> dict[str, Any]:
    production = production_data(ModelRegistry(args.registry), args.model)
    cuts = {k: f["cuts"] for k, f in production.stats["features"].items()} if production.stats else {}
    reference = Reference(cuts, production.features)
    spec = InputSpec(uri=args.input, bags=tuple(args.bags), columns=args.columns,
                     entity_fields=tuple(args.entity_fields), task=args.task, dates=args.dated())
    window = window_statistics(spark, spec, args.gate.features, args.gate.bins, reference)
    decision = judge(production, window, args.gate)
    publish(args.output, window, decision)
    report = join(args.output, "index.html")
    if not decision["passed"] and args.gate.action == "fail":
        raise GlmixError(f"data gate {decision['verdict']}; report {report}")
    return {"job": "data_gate", "input": qualified(args.input), "passed": decision["passed"],
            "verdict": decision["verdict"], "report": report, "rows": window["rows"]}


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
