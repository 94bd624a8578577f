"""Random effects: batched solving vs GDMix's per-entity scipy loop and scikit-learn per entity.

Same per-entity objective everywhere: sum_i log(1 + e^{m_i}) - y_i m_i + l2/2 |b|^2 with the
intercept column inside b (so regularized, scikit-learn's fit_intercept=False on that column).

1. Solver speed, same entities, one process: glmix.glm.batched_newton vs a loop of scipy fmin_l_bfgs_b (what
   GDMix does) vs a loop of scikit-learn LogisticRegression(lbfgs). Objectives are compared too.
2. The Spark training stage at scale (default 1M users x ~20 rows, Zipf-skewed, per-user models over
   item attributes) on partitions made by the product's own jobs (generate, index, partition),
   against the floor: Spark reading the same input rows and grouping them by user, in the same run.

    make bench BENCH=random_effect
    GLMIX_BENCH_RE_ENTITIES=100000 make bench BENCH=random_effect
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import fmin_l_bfgs_b
from sklearn.linear_model import LogisticRegression

from bench.datasets import CACHE, synthetic
from bench.report import print_table
from bench.sizes import SMOKE, size
from glmix.glm.batched_newton import EntityProblem, SolverSettings, entity_objective, solve_entities
from glmix.io.storage import is_published, join
from glmix.settings import FeatureShard
from glmix.train.random_effect import RandomEffectConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

L2 = 1.0
ROWS_PER_ENTITY = 20
FEATURES = 10  # per entity, intercept included


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

    def timed(solve: Callable[[list[EntityProblem]], Any]) -> tuple[float, Any]:
        solve(problems[:100])  # warm up imports and caches, for every solver alike
        started = time.perf_counter()
        result = solve(problems)
        return time.perf_counter() - started, result

    ours_s, ours = timed(lambda ps: solve_entities(ps, SolverSettings("logistic")))
    scipy_s, scipy_f = timed(scipy_loop)
    sk_s, sk_f = timed(sklearn_loop)

    ours_f = np.array([s.objective for s in ours])

    def gap(other: list[float]) -> float:
        return float(np.max((np.array(other) - ours_f) / np.abs(ours_f)))

    print_table(f"per-entity solvers, {count:,} entities x ~{ROWS_PER_ENTITY} rows x {FEATURES} features, one core",
                ["solver", "seconds", "entities/s", "speed-up of glmix", "max rel. objective gap (peer - glmix)"],
                [["glmix batched Newton", ours_s, count / ours_s, 1.0, 0.0],
                 ["scipy fmin_l_bfgs_b loop (GDMix)", scipy_s, count / scipy_s, scipy_s / ours_s, gap(scipy_f)],
                 ["scikit-learn LogisticRegression loop", sk_s, count / sk_s, sk_s / ours_s, gap(sk_f)]])


def partitioned_dataset(spark: SparkSession, count: int) -> tuple[str, str, str]:
    """Synthetic rows for ``count`` users (~ROWS_PER_ENTITY rows each, Zipf-skewed), made by the
    product's own generator, indexing and partitioning jobs: (input rows, partitions, index)."""
    from jobs.index_features import index_features
    from jobs.partition_random_effect import partition_random_effect

    data = join(synthetic(count * ROWS_PER_ENTITY, users=count, items=10_000, context_dimension=100,
                          context_nnz=1), "train")
    root = join(str(CACHE), f"re-bench-{count}")
    index_dir, partitions = join(root, "index"), join(root, "partitions")
    if not is_published(index_dir):
        index_features(spark, data, index_dir, FeatureShard(name="per-user", bags=("itemFeatures",)))
    if not is_published(partitions):
        partition_random_effect(spark, data, "userId", index_dir, partitions, lower_bound=1, upper_bound=1000,
                                partitions=8, task="logistic")
    return data, partitions, index_dir


def spark_stage(count: int) -> None:
    from pyspark.sql import functions as F

    from glmix.spark.session import session
    from jobs.train_random_effect import train_random_effect

    spark = session("local[2]", "bench-random-effect", quick_start=SMOKE,
                    extra={"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8"})
    rows_dir, partitions, index_dir = partitioned_dataset(spark, count)
    started = time.perf_counter()
    (spark.read.format("avro").load(rows_dir).groupBy("userId")
     .agg(F.collect_list(F.struct("uid", "label", "itemFeatures")).alias("rows"))
     .write.mode("overwrite").parquet(str(CACHE / "re-floor")))
    floor_s = time.perf_counter() - started
    started = time.perf_counter()
    report = train_random_effect(spark, partitions, index_dir, str(CACHE / "re-model"),
                                 RandomEffectConfig(task="logistic", l2=L2))
    train_s = time.perf_counter() - started
    spark.stop()
    entities = report["entities_trained"]
    print_table(f"random-effect training stage on local[2]: {entities:,} users, {report['rows']:,} rows, "
                f"item-attribute features (<= 41 a user)", ["stage", "seconds", "entities/s", "x floor"],
                [["floor: read the rows + group by user + write", floor_s, entities / floor_s, 1.0],
                 ["glmix train_random_effect", train_s, entities / train_s, train_s / floor_s]])
    print(f"entities not converged: {report['entities_not_converged']}; iteration histogram: "
          f"{report['iteration_histogram']}; peak RSS of a Python worker: {report['peak_worker_rss_mb']:.0f} MB")


def run() -> None:
    solver_comparison(size(10_000, 300))
    spark_stage(size(1_000_000, 500, "GLMIX_BENCH_RE_ENTITIES"))
