"""Random effects: batched solving vs GDMix's per-entity scipy loop and scikit-learn per entity.

Same per-entity objective everywhere: sum_i log(1 + e^{m_i}) - y_i m_i + l2/2 |b|^2 with the
intercept column inside b (so regularized, scikit-learn's fit_intercept=False on that column).

1. Solver speed, same entities, one process: glmix.batched vs a loop of scipy fmin_l_bfgs_b (what
   GDMix does) vs a loop of scikit-learn LogisticRegression(lbfgs). Objectives are compared too.
2. The Spark training stage at scale (default 1M entities x ~20 rows x ~10 features) against the
   floor: Spark reading the same rows and grouping them by entity, measured in the same run.

    make bench BENCH=random_effect
    GLMIX_BENCH_RE_ENTITIES=100000 make bench BENCH=random_effect
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.optimize import fmin_l_bfgs_b
from sklearn.linear_model import LogisticRegression

from bench.datasets import CACHE
from bench.report import print_table
from glmix.batched import EntityProblem, SolverSettings, entity_objective, solve_entities
from glmix.config import FeatureShard
from glmix.feature_index import write_shard_meta
from glmix.storage import is_published, publish_atomically

L2 = 1.0
ROWS_PER_ENTITY = 20
FEATURES = 10  # per entity, intercept included
VOCABULARY = 200


def synthetic_entities(count: int, seed: int = 0) -> list[EntityProblem]:
    rng = np.random.default_rng(seed)
    problems = []
    for e in range(count):
        n = int(rng.integers(ROWS_PER_ENTITY // 2, ROWS_PER_ENTITY * 3 // 2 + 1))
        x = np.hstack([np.ones((n, 1)), rng.normal(size=(n, FEATURES - 1)) * (rng.random((n, FEATURES - 1)) < 0.6)])
        beta = rng.normal(size=FEATURES) * 0.7
        y = (rng.random(n) < 1 / (1 + np.exp(-(x @ beta)))).astype(float)
        problems.append(EntityProblem(f"e{e}", x, y, np.ones(n), np.zeros(n), np.full(FEATURES, L2),
                                      np.zeros(FEATURES), np.zeros(FEATURES)))
    return problems


def scipy_loop(problems: list[EntityProblem]) -> list[float]:
    """GDMix's way: one fmin_l_bfgs_b per entity, same stopping rule as ours."""
    return [fmin_l_bfgs_b(lambda b, p=p: entity_objective(p, "logistic", b), p.x0, factr=10, pgtol=1e-10)[1]
            for p in problems]


def sklearn_loop(problems: list[EntityProblem]) -> list[float]:
    objectives = []
    for p in problems:
        model = LogisticRegression(C=1 / L2, fit_intercept=False, tol=1e-10, max_iter=1000).fit(p.x, p.y) \
            if len(np.unique(p.y)) > 1 else None
        b = model.coef_[0] if model is not None else fmin_l_bfgs_b(
            lambda b, p=p: entity_objective(p, "logistic", b), p.x0, factr=10)[0]
        objectives.append(entity_objective(p, "logistic", b)[0])
    return objectives


def solver_comparison(count: int = 10_000) -> None:
    """The default count is one Arrow batch of the Spark stage (what one solve_entities call gets)."""
    problems = synthetic_entities(count)

    def timed(solve) -> tuple[float, object]:
        solve(problems[:100])  # warm up imports and caches, for every solver alike
        started = time.perf_counter()
        result = solve(problems)
        return time.perf_counter() - started, result

    ours_s, ours = timed(lambda ps: solve_entities(ps, SolverSettings("logistic")))
    scipy_s, scipy_f = timed(scipy_loop)
    sk_s, sk_f = timed(sklearn_loop)

    ours_f = np.array([s.objective for s in ours])
    gap = lambda other: float(np.max((np.array(other) - ours_f) / np.abs(ours_f)))  # noqa: E731
    print_table(f"per-entity solvers, {count:,} entities x ~{ROWS_PER_ENTITY} rows x {FEATURES} features, one core",
                ["solver", "seconds", "entities/s", "speed-up of glmix", "max rel. objective gap (peer - glmix)"],
                [["glmix batched Newton", ours_s, count / ours_s, 1.0, 0.0],
                 ["scipy fmin_l_bfgs_b loop (GDMix)", scipy_s, count / scipy_s, scipy_s / ours_s, gap(scipy_f)],
                 ["scikit-learn LogisticRegression loop", sk_s, count / sk_s, sk_s / ours_s, gap(sk_f)]])


def write_dataset(count: int) -> tuple[str, str, str]:
    """Row-level parquet (for the floor) and the same rows as entity blocks (the trainer's input)."""
    root = CACHE / f"re-bench-{count}"
    rows_dir, blocks_dir, index_dir = root / "rows", root / "blocks", root / "index"
    if is_published(str(blocks_dir)):
        return str(rows_dir), str(blocks_dir), str(index_dir)
    rng = np.random.default_rng(1)
    with publish_atomically(str(index_dir)) as tmp:
        names = ["(INTERCEPT)"] + [f"f{j}" for j in range(1, VOCABULARY)]
        os.makedirs(f"{tmp}/index")
        pq.write_table(pa.table({"name": names, "term": [""] * VOCABULARY, "index": np.arange(VOCABULARY)}),
                       f"{tmp}/index/part-0.parquet")
        write_shard_meta(tmp, FeatureShard(name="re", bags=("features",)), VOCABULARY)
    chunk = 50_000
    with publish_atomically(str(rows_dir)) as rows_tmp, publish_atomically(str(blocks_dir)) as blocks_tmp:
        os.makedirs(f"{blocks_tmp}/active", exist_ok=True)
        write_shard_meta(blocks_tmp, FeatureShard(name="re", bags=("features",)), VOCABULARY)
        for part, start in enumerate(range(0, count, chunk)):
            size = min(chunk, count - start)
            row_tables, blocks = [], {k: [] for k in ("entity_id", "n_rows", "features", "uids", "labels", "weights",
                                                      "offsets", "row_nnz", "indices", "vals")}
            for e in range(start, start + size):
                n = int(rng.integers(ROWS_PER_ENTITY // 2, ROWS_PER_ENTITY * 3 // 2 + 1))
                features = np.sort(np.concatenate([[0], rng.choice(np.arange(1, VOCABULARY), FEATURES - 1,
                                                                   replace=False)]))
                mask = rng.random((n, FEATURES)) < 0.6
                mask[:, 0] = True
                values = np.where(mask, rng.normal(size=(n, FEATURES)), 0.0)
                values[:, 0] = 1.0
                y = (rng.random(n) < 0.5).astype(float)
                cols = [np.flatnonzero(mask[i]) for i in range(n)]
                blocks["entity_id"].append(f"e{e}")
                blocks["n_rows"].append(n)
                blocks["features"].append(features.tolist())
                blocks["uids"].append([f"e{e}-{i}" for i in range(n)])
                blocks["labels"].append(y.tolist())
                blocks["weights"].append([1.0] * n)
                blocks["offsets"].append([0.0] * n)
                blocks["row_nnz"].append([len(c) for c in cols])
                blocks["indices"].append(features[np.concatenate(cols)].tolist())
                blocks["vals"].append(np.concatenate([values[i, c] for i, c in enumerate(cols)]).tolist())
                row_tables.append((f"e{e}", [f"e{e}-{i}" for i in range(n)], y, [features[c].tolist() for c in cols],
                                   [values[i, c].tolist() for i, c in enumerate(cols)]))
            pq.write_table(pa.table(blocks), f"{blocks_tmp}/active/part-{part:05d}.parquet")
            pq.write_table(pa.table({
                "entity_id": [t[0] for t in row_tables for _ in t[1]], "uid": [u for t in row_tables for u in t[1]],
                "label": np.concatenate([t[2] for t in row_tables]),
                "indices": [i for t in row_tables for i in t[3]], "values": [v for t in row_tables for v in t[4]]}),
                f"{rows_tmp}/part-{part:05d}.parquet")
    return str(rows_dir), str(blocks_dir), str(index_dir)


def spark_stage(count: int) -> None:
    from pyspark.sql import functions as F

    from glmix.spark import session
    from jobs.train_random_effect import RandomEffectConfig, train_random_effect

    rows_dir, blocks_dir, index_dir = write_dataset(count)
    spark = session("local[2]", "bench-random-effect", extra={"spark.driver.memory": "4g",
                                                               "spark.sql.shuffle.partitions": "8"})
    started = time.perf_counter()
    (spark.read.parquet(rows_dir).groupBy("entity_id")
     .agg(F.collect_list(F.struct("uid", "label", "indices", "values")).alias("rows"))
     .write.mode("overwrite").parquet(str(CACHE / "re-floor")))
    floor_s = time.perf_counter() - started
    started = time.perf_counter()
    report = train_random_effect(spark, blocks_dir, index_dir, str(CACHE / "re-model"),
                                 RandomEffectConfig(task="logistic", l2=L2))
    train_s = time.perf_counter() - started
    spark.stop()
    print_table(f"random-effect training stage on local[2]: {count:,} entities x ~{ROWS_PER_ENTITY} rows x "
                f"{FEATURES} features", ["stage", "seconds", "entities/s", "x floor"],
                [["floor: read rows + group by entity + write", floor_s, count / floor_s, 1.0],
                 ["glmix train_random_effect", train_s, count / train_s, train_s / floor_s]])
    print(f"entities not converged: {report['entities_not_converged']}; iteration histogram: "
          f"{report['iteration_histogram']}; peak RSS of a Python worker: {report['peak_worker_rss_mb']:.0f} MB")


def run() -> None:
    solver_comparison()
    spark_stage(int(os.environ.get("GLMIX_BENCH_RE_ENTITIES", "1000000")))
