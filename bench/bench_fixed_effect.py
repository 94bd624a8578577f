"""Fixed effect vs scikit-learn and Spark MLlib: same data, same objective, same tolerance, one run.

Objective (all three): sum_i log(1 + e^{m_i}) - y_i m_i + l2/2 |b|^2, intercept unregularized.
scikit-learn LogisticRegression(solver="lbfgs", C=1/l2) minimizes exactly that; Spark MLlib
LogisticRegression minimizes the same divided by n, so it gets regParam = l2 / n and
standardization off. Every solution is scored with the same objective function, so the table
shows both speed and how close each got to the optimum. Times are fit times (data in memory); on
a9a, where a fit takes well under a second, each solver fits 5 times in turn and the median counts
(Spark MLlib: one fit).

TRON (trust-region Newton, glmix.glm.tron) runs beside L-BFGS on the same rows: its iterations are
Newton steps, each a few Hessian-vector products (one pass over the rows each).

Also: throughput (non-zeros x iterations / s) with 1 and 2 workers (local backend, all-reduce), and
peak memory per worker against the in-memory size of its data.

    make bench BENCH=fixed_effect          # a9a and a 1M-row x 100k-feature synthetic set
    GLMIX_BENCH_FE_ROWS=200000 make bench BENCH=fixed_effect
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from bench.datasets import CACHE, libsvm, synthetic
from bench.report import print_table
from bench.sizes import SMOKE, size
from glmix.data.sparse_rows import load_rows
from glmix.glm.losses import Loss
from glmix.io.storage import is_published, join
from glmix.settings import FeatureShard
from glmix.train.fixed_effect import FixedEffectConfig, Trainer
from launcher.local import LocalBackend
from launcher.spec import JobSpec

L2 = 1.0
TOL = 1e-6
FTOL = 64 * np.finfo(float).eps  # scikit-learn's lbfgs ftol


def prepared(name: str, data: str, bags: tuple[str, ...]) -> tuple[str, str]:
    """Index and prepare a dataset once (cached next to it)."""
    index, rows = str(CACHE / f"{name}-index"), str(CACHE / f"{name}-fe")
    if not is_published(rows):
        from glmix.spark.session import session
        from jobs.index_features import index_features
        from jobs.prepare_fixed_effect import prepare_fixed_effect

        spark = session("local[2]", "bench-prepare", extra={"spark.driver.memory": "6g"}, quick_start=SMOKE)
        index_features(spark, data, index, FeatureShard(name="global", bags=bags))
        prepare_fixed_effect(spark, data, index, rows, files=4, task="logistic")
        spark.stop()
    return index, rows


def objective(x: sp.csr_matrix, y: np.ndarray, b: np.ndarray, intercept: float) -> float:
    m = x @ b + intercept
    return float(Loss("logistic").value(y, m).sum() + 0.5 * L2 * b @ b)


def run_ours(index: str, rows: str, compute: str, n_rows: int, precondition: bool = True,
             solver: str = "lbfgs") -> tuple[float, float, int]:
    """scikit-learn averages its loss over the rows, so its gtol on our summed objective is n * gtol."""
    out = str(CACHE / f"fe-model-{compute}-{solver}-{n_rows}")
    config = FixedEffectConfig(task="logistic", l2=L2, ftol=FTOL, gtol=TOL * n_rows, compute=compute,
                               validation_every=0, max_iterations=5000, precondition=precondition,
                               solver="tron" if solver == "tron" else "lbfgs")
    report = Trainer(config, index, rows, out).run().report
    return report["train_seconds"], report["final_objective"], report["iterations"]


def run_sklearn(x: sp.csr_matrix, y: np.ndarray) -> tuple[float, float, int]:
    model = LogisticRegression(solver="lbfgs", C=1.0 / L2, tol=TOL, max_iter=5000)
    started = time.perf_counter()
    model.fit(x, y)
    seconds = time.perf_counter() - started
    return seconds, objective(x, y, model.coef_[0], model.intercept_[0]), int(model.n_iter_[0])


def run_spark_mllib(x: sp.csr_matrix, y: np.ndarray) -> tuple[float, float, int]:
    from pyspark.ml.classification import LogisticRegression as SparkLR
    from pyspark.ml.linalg import SparseVector

    from glmix.spark.session import session

    spark = session("local[2]", "bench-mllib", extra={"spark.driver.memory": "6g"}, quick_start=SMOKE)
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


def compare(name: str, index: str, rows_uri: str, with_spark: bool, repeats: int = 1) -> None:
    """Every solver on the same rows; with ``repeats`` > 1 the solvers run in turn that many times and
    the table shows each one's median fit time (Spark MLlib: one fit)."""
    rows = load_rows(rows_uri)
    d = int(rows.indices.max()) + 1
    # the prepared rows carry the intercept as column 0; peers fit their own intercept instead
    x = rows.to_scipy(d)[:, 1:].tocsr()
    y = rows.label
    solvers: dict[str, Callable[[], tuple[float, float, int]]] = {"glmix (1 worker, tensorflow)": lambda: run_ours(index, rows_uri, "tensorflow", rows.rows),
               "glmix (1 worker, tensorflow, no preconditioner)": lambda: run_ours(index, rows_uri, "tensorflow",
                                                                                  rows.rows, precondition=False),
               "glmix (1 worker, scipy)": lambda: run_ours(index, rows_uri, "scipy", rows.rows),
               "glmix TRON (1 worker, tensorflow)": lambda: run_ours(index, rows_uri, "tensorflow", rows.rows,
                                                                     solver="tron"),
               "glmix TRON (1 worker, scipy)": lambda: run_ours(index, rows_uri, "scipy", rows.rows, solver="tron"),
               "scikit-learn lbfgs": lambda: run_sklearn(x, y)}
    runs: dict[str, list[tuple[float, float, int]]] = {key: [] for key in solvers}
    for _ in range(repeats):
        for key, solve in solvers.items():
            runs[key].append(solve())
    results = {key: (float(np.median([r[0] for r in done])), *done[-1][1:]) for key, done in runs.items()}
    if with_spark:
        results["Spark MLlib (local[2])"] = run_spark_mllib(x, y)
    best = min(v[1] for v in results.values())
    sk_seconds = results["scikit-learn lbfgs"][0]
    timing = f"median fit seconds of {repeats}" if repeats > 1 else "fit seconds"
    print_table(f"fixed effect, {name}: {rows.rows:,} rows x {d - 1:,} features, {rows.nnz:,} non-zeros, l2={L2}",
                ["solver", timing, "iterations", "objective", "rel. gap to best", "time / scikit-learn"],
                [[k, s, it, f, (f - best) / abs(best), s / sk_seconds] for k, (s, f, it) in results.items()])


def run_workers(index: str, rows_uri: str, workers: int, name: str) -> dict[str, Any]:
    """Train with ``workers`` local worker processes; the chief's (worker 0) report."""
    out = CACHE / f"fe-{name}"
    command = (f"{sys.executable} -m glmix.train.fixed_effect --index {index} --train {rows_uri} --output {out} "
               f"--task logistic --l2 {L2} --ftol {FTOL} --gtol {TOL * 1e5} --validation-every 0")
    result = LocalBackend(CACHE / "launcher-runs").submit(JobSpec.from_dict(
        {"name": f"bench-fe-{name}", "tasks": {"worker": {"instances": workers, "command": command}}}))
    assert result.final_status == "SUCCEEDED", result.failed
    report: dict[str, Any] = json.loads((out / "_report.json").read_text())
    return report


def empty_copy(rows_uri: str) -> str:
    """The prepared dataset with no rows (same schema and metadata): a worker's memory without data."""
    source, target = Path(rows_uri), CACHE / f"{Path(rows_uri).name}-empty"
    target.mkdir(exist_ok=True)
    for path in source.iterdir():
        if path.name.startswith("_"):
            shutil.copy(path, target / path.name)
    first_part = next(p for p in sorted(source.iterdir()) if p.name.startswith("part-"))
    pq.write_table(pq.read_schema(first_part).empty_table(), target / "part-00000.parquet")
    return str(target)


def scaling(index: str, rows_uri: str) -> None:
    """Per worker count: throughput, and peak memory above that of the same workers with no rows
    (Python, TensorFlow, XLA and, for several workers, the all-reduce's runtime)."""
    empty, table = empty_copy(rows_uri), []
    for workers in (1,) if SMOKE else (1, 2):
        runtime_mb = run_workers(index, empty, workers, f"empty-{workers}")["peak_rss_mb_this_worker"]
        report = run_workers(index, rows_uri, workers, f"scaling-{workers}")
        nnz_total = report["nnz_this_worker"] * workers
        data_mb, peak_mb = report["data_bytes_this_worker"] / 2**20, report["peak_rss_mb_this_worker"]
        table.append([workers, report["train_seconds"], report["iterations"],
                      nnz_total * report["evaluations"] / report["train_seconds"],
                      data_mb, peak_mb, runtime_mb, peak_mb / data_mb, (peak_mb - runtime_mb) / data_mb])
    print_table("fixed effect scaling (local backend, TensorFlow all-reduce; 2 cores in all)",
                ["workers", "train seconds", "iterations", "nnz x evaluations / s", "data MB / worker",
                 "peak RSS MB / worker", "no-rows peak MB / worker", "peak / data", "(peak - no-rows peak) / data"],
                table)


def run() -> None:
    a9a = libsvm("a9a")
    index, rows = prepared("a9a", a9a, ("features",))
    compare("a9a", index, rows, with_spark=not SMOKE, repeats=size(5, 1))
    n_rows = size(1_000_000, 5_000, "GLMIX_BENCH_FE_ROWS")
    data = join(synthetic(n_rows, users=n_rows // 10, items=size(10_000, 100),
                          context_dimension=size(100_000, 1_000), context_nnz=20),
                "train")
    index, rows = prepared(f"synthetic-{n_rows}", data, ("features", "userFeatures", "itemFeatures"))
    compare(f"synthetic {Path(data).parent.name}", index, rows, with_spark=True)
    scaling(index, rows)
