"""Fixed effect vs scikit-learn and Spark MLlib: same data, same objective, same tolerance, one run.

Objective (all three): sum_i log(1 + e^{m_i}) - y_i m_i + l2/2 |b|^2, intercept unregularized.
scikit-learn LogisticRegression(solver="lbfgs", C=1/l2) minimizes exactly that; Spark MLlib
LogisticRegression minimizes the same divided by n, so it gets regParam = l2 / n and
standardization off. Every solution is scored with the same objective function, so the table
shows both speed and how close each got to the optimum. Times are fit times (data in memory).

Also: throughput (non-zeros x iterations / s) with 1 and 2 workers (local backend, all-reduce), and
peak memory per worker against the in-memory size of its data.

    make bench BENCH=fixed_effect          # a9a and a 1M-row x 100k-feature synthetic set
    GLMIX_BENCH_FE_ROWS=200000 make bench BENCH=fixed_effect
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.datasets import CACHE, libsvm, synthetic
from bench.report import print_table
from glmix.config import FeatureShard
from glmix.fixed_effect import FixedEffectConfig, Trainer
from glmix.losses import Loss
from glmix.sparse_rows import load_rows
from glmix.storage import is_published, join
from launcher.local import LocalBackend
from launcher.spec import JobSpec

L2 = 1.0
TOL = 1e-6
FTOL = 64 * np.finfo(float).eps  # scikit-learn's lbfgs ftol


def prepared(name: str, data: str, bags: tuple[str, ...]) -> tuple[str, str]:
    """Index and prepare a dataset once (cached next to it)."""
    index, rows = str(CACHE / f"{name}-index"), str(CACHE / f"{name}-fe")
    if not is_published(rows):
        from glmix.spark import session
        from jobs.index_features import index_features
        from jobs.prepare_fixed_effect import prepare_fixed_effect

        spark = session("local[2]", "bench-prepare", extra={"spark.driver.memory": "6g"})
        index_features(spark, data, index, FeatureShard(name="global", bags=bags))
        prepare_fixed_effect(spark, data, index, rows, files=4, task="logistic")
        spark.stop()
    return index, rows


def objective(x, y, b: np.ndarray, intercept: float) -> float:
    m = x @ b + intercept
    return float(Loss("logistic").value(y, m).sum() + 0.5 * L2 * b @ b)


def run_ours(index: str, rows: str, compute: str, n_rows: int, precondition: bool = True) -> tuple[float, float, int]:
    """scikit-learn averages its loss over the rows, so its gtol on our summed objective is n * gtol."""
    out = str(CACHE / f"fe-model-{compute}-{n_rows}")
    config = FixedEffectConfig(task="logistic", l2=L2, ftol=FTOL, gtol=TOL * n_rows, compute=compute,
                               validation_every=0, max_iterations=5000, precondition=precondition)
    report = Trainer(config, index, rows, out).run()
    return report["train_seconds"], report["final_objective"], report["iterations"]


def run_sklearn(x, y) -> tuple[float, float, int]:
    model = LogisticRegression(solver="lbfgs", C=1.0 / L2, tol=TOL, max_iter=5000)
    started = time.perf_counter()
    model.fit(x, y)
    seconds = time.perf_counter() - started
    return seconds, objective(x, y, model.coef_[0], model.intercept_[0]), int(model.n_iter_[0])


def run_spark_mllib(x, y) -> tuple[float, float, int]:
    from pyspark.ml.classification import LogisticRegression as SparkLR
    from pyspark.ml.linalg import SparseVector

    from glmix.spark import session

    spark = session("local[2]", "bench-mllib", extra={"spark.driver.memory": "6g"})
    n, d = x.shape
    rows = [(float(y[i]), SparseVector(d, x.indices[x.indptr[i]:x.indptr[i + 1]].tolist(),
                                       x.data[x.indptr[i]:x.indptr[i + 1]].tolist())) for i in range(n)]
    frame = spark.createDataFrame(rows, ["label", "features"]).repartition(2).cache()
    frame.count()
    model = SparkLR(regParam=L2 / n, elasticNetParam=0.0, standardization=False, tol=1e-10, maxIter=5000)
    started = time.perf_counter()
    fitted = model.fit(frame)
    seconds = time.perf_counter() - started
    coefficients = fitted.coefficients.toArray()
    value = objective(x, y, coefficients, fitted.intercept)
    iterations = fitted.summary.totalIterations
    frame.unpersist()
    spark.stop()
    return seconds, value, iterations


def compare(name: str, index: str, rows_uri: str, with_spark: bool) -> None:
    rows = load_rows(rows_uri)
    d = int(rows.indices.max()) + 1
    # the prepared rows carry the intercept as column 0; peers fit their own intercept instead
    x = rows.to_scipy(d)[:, 1:].tocsr()
    y = rows.label
    results = {"glmix (1 worker, tensorflow)": run_ours(index, rows_uri, "tensorflow", rows.rows),
               "glmix (1 worker, tensorflow, no preconditioner)": run_ours(index, rows_uri, "tensorflow", rows.rows,
                                                                          precondition=False),
               "glmix (1 worker, scipy)": run_ours(index, rows_uri, "scipy", rows.rows),
               "scikit-learn lbfgs": run_sklearn(x, y)}
    if with_spark:
        results["Spark MLlib (local[2])"] = run_spark_mllib(x, y)
    best = min(v[1] for v in results.values())
    sk_seconds = results["scikit-learn lbfgs"][0]
    print_table(f"fixed effect, {name}: {rows.rows:,} rows x {d - 1:,} features, {rows.nnz:,} non-zeros, l2={L2}",
                ["solver", "fit seconds", "iterations", "objective", "rel. gap to best", "time / scikit-learn"],
                [[k, s, it, f, (f - best) / abs(best), s / sk_seconds] for k, (s, f, it) in results.items()])


def scaling(index: str, rows_uri: str) -> None:
    table = []
    for workers in (1, 2):
        out = CACHE / f"fe-scaling-{workers}"
        command = (f"{sys.executable} -m glmix.fixed_effect --index {index} --train {rows_uri} --output {out} "
                   f"--task logistic --l2 {L2} --ftol {FTOL} --gtol {TOL * 1e5} --validation-every 0")
        result = LocalBackend(CACHE / "launcher-runs").submit(JobSpec.from_dict(
            {"name": f"bench-fe-{workers}", "tasks": {"worker": {"instances": workers, "command": command}}}))
        assert result.final_status == "SUCCEEDED", result.failed
        report = json.loads((out / "_report.json").read_text())  # the chief's (worker 0) view
        nnz_total = report["nnz_this_worker"] * workers
        table.append([workers, report["train_seconds"], report["iterations"],
                      nnz_total * report["evaluations"] / report["train_seconds"],
                      report["data_bytes_this_worker"] / 2**20, report["peak_rss_mb_this_worker"],
                      report["peak_rss_mb_this_worker"] / (report["data_bytes_this_worker"] / 2**20)])
    print_table("fixed effect scaling (local backend, TensorFlow all-reduce; 2 cores in all)",
                ["workers", "train seconds", "iterations", "nnz x evaluations / s", "data MB / worker",
                 "peak RSS MB / worker", "peak / data"], table)


def run() -> None:
    a9a = libsvm("a9a")
    index, rows = prepared("a9a", a9a, ("features",))
    compare("a9a", index, rows, with_spark=True)
    n_rows = int(os.environ.get("GLMIX_BENCH_FE_ROWS", "1000000"))
    data = join(synthetic(n_rows, users=n_rows // 10, items=10_000, context_dimension=100_000, context_nnz=20),
                "train")
    index, rows = prepared(f"synthetic-{n_rows}", data, ("features", "userFeatures", "itemFeatures"))
    compare(f"synthetic {Path(data).parent.name}", index, rows, with_spark=True)
    scaling(index, rows)
