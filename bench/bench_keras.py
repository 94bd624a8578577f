"""Deep fixed-effect throughput: training examples per second with 1 and 2 workers, local processes and
the YARN dev cluster, and the share of a worker's time spent reading input vs training.

Data: 200k synthetic rows with a nonlinear global effect (~30 non-zeros a row), prepared once;
model: the built-in wide-and-deep, batch 512 per worker, 3 epochs. Examples per second counts the
rows every worker processed (steps x batch x workers) over the fit time.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.datasets import CACHE
from bench.dev_cluster import running_cluster
from bench.report import print_table
from bench.sizes import SMOKE, size
from glmix.data.synthetic import generate, generic_spec
from glmix.io.storage import is_published, join, storage_for
from glmix.settings import FeatureShard
from glmix.spark.session import session
from jobs.index_features import index_features
from jobs.prepare_fixed_effect import prepare_fixed_effect
from launcher.backend import Backend
from launcher.local import LocalBackend
from launcher.spec import JobSpec

ROWS = size(200_000, 2_000)
EPOCHS = size(3, 1)


def prepared() -> Path:
    root = CACHE / f"keras-nonlinear-{ROWS}"
    if not is_published(str(root / "fe")):
        spec = generic_spec(rows=ROWS, users=2000, items=200, context_dimension=20, context_nnz=20, seed=1)
        generate(spec.model_copy(update={"nonlinear_std": 2.0}), str(root / "data"), processes=os.cpu_count() or 1)
        spark = session("local[2]", "bench-keras", quick_start=SMOKE)
        index_features(spark, str(root / "data" / "train"), str(root / "index"),
                       FeatureShard(name="g", bags=("features", "userFeatures", "itemFeatures")))
        prepare_fixed_effect(spark, str(root / "data" / "train"), str(root / "index"), str(root / "fe"), 4)
    return root


def train(backend: Backend, data: str, workers: int, output: str) -> dict[str, Any]:
    command = (f"{sys.executable} -m glmix.train.keras_fixed_effect --index {data}/index --train {data}/fe "
               f"--output {output} --task logistic --epochs {EPOCHS} --batch-size 512 "
               f"--backup-dir {tempfile.mkdtemp(prefix='glmix-bench-backup-')}")
    spec = JobSpec.from_dict({"name": "glmix-bench-keras", "tasks": {"worker": {
        "instances": workers, "memory": 3072, "command": command}}})
    result = backend.submit(spec)
    assert result.final_status == "SUCCEEDED", result.failed
    report: dict[str, Any] = json.loads(storage_for(output).read_bytes(join(output, "_report.json")))
    return report


def run() -> None:
    from glmix.io.storage import copy_tree

    root = prepared()
    rows = []
    with running_cluster(), tempfile.TemporaryDirectory(prefix="glmix-bench-keras-") as scratch:
        from launcher.yarn import YarnBackend

        hdfs = f"hdfs:///tmp/glmix-bench-keras-{ROWS}"
        for part in ("index", "fe"):
            if not is_published(f"{hdfs}/{part}"):
                copy_tree(str(root / part), f"{hdfs}/{part}")
        for name, backend, data in (("local processes", LocalBackend(Path(scratch) / "runs"), str(root)),
                                    ("YARN dev cluster", YarnBackend(), hdfs)):
            for workers in (2,) if SMOKE else (1, 2):   # a smoke run checks each backend once
                out = f"{data}/model-{workers}" if "://" in data else f"{scratch}/model-{workers}"
                report = train(backend, data, workers, out)
                busy = report["input_seconds"] + report["fit_seconds"]
                rows.append([name, workers, report["examples_per_second"], report["fit_seconds"],
                             report["input_seconds"], f"{report['input_seconds'] / busy:.0%}"])
    print_table(f"Keras wide-and-deep fixed effect, {ROWS:,} rows x ~30 non-zeros, {EPOCHS} epochs, batch 512/worker",
                ["backend", "workers", "examples/s", "fit seconds", "input seconds", "input share"], rows)
