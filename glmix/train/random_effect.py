"""Random effects: one GLM per entity, the numpy side of the Spark stage (jobs/train_random_effect).

An entity arrives as one row of its partition (jobs/partition_random_effect: its rows' labels,
weights, offsets and features projected onto its own feature set); ``solve_batches`` is the body of
the stage's ``mapInArrow``: it turns each Arrow batch of entities into problems, solves them
together with the batched Newton solver (glmix.glm.batched_newton) and returns a batch of results
(coefficients by feature name and term, variances, scores of the entity's rows). No Spark here:
the same functions serve tests and benchmarks on plain Arrow batches.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from glmix.glm.batched_newton import EntityProblem, SolverSettings, solve_entities
from glmix.settings import Task
from glmix.train.warm_start import (
    FeatureKey,
    PreviousModels,
    VarianceKind,
    coefficients_at,
    prior_at,
    variances_from_hessian,
)


class RandomEffectConfig(PreviousModels):
    task: Task
    l2: float = Field(1.0, ge=0)
    l1: float = Field(0.0, ge=0)
    regularize_intercept: bool = Field(True, description="small entities need it: a separable entity "
                                                         "would otherwise push its intercept to infinity")
    intercept_l2: float | None = Field(None, ge=0, description="the intercept's L2 weight (default: l2): entity "
                                                               "biases are often wider than their slopes")
    max_iterations: int = Field(50, ge=1)
    gtol: float = Field(1e-10, ge=0)
    variance: VarianceKind = "none"
    sparsity_threshold: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _intercept_weight_is_used(self) -> RandomEffectConfig:
        if self.intercept_l2 is not None and not self.regularize_intercept:
            raise ValueError("intercept_l2 is set but regularize_intercept is off")
        return self

    @property
    def intercept_weight(self) -> float:
        """The intercept's L2 weight: 0 when it is not regularized, else intercept_l2 or l2."""
        if not self.regularize_intercept:
            return 0.0
        return self.l2 if self.intercept_l2 is None else self.intercept_l2


NTV = pa.struct([("name", pa.string()), ("term", pa.string()), ("value", pa.float64())])
RESULT_SCHEMA = pa.schema([
    ("entity_id", pa.string()), ("means", pa.list_(NTV)), ("variances", pa.list_(NTV)),
    ("iterations", pa.int32()), ("converged", pa.bool_()), ("objective", pa.float64()),
    ("uids", pa.list_(pa.string())), ("scores", pa.list_(pa.float64())), ("features", pa.list_(pa.int64())),
    ("coefficients", pa.list_(pa.float64())), ("peak_rss_mb", pa.float64())])
RESULT_DDL = ("entity_id string, means array<struct<name:string,term:string,value:double>>, "
              "variances array<struct<name:string,term:string,value:double>>, iterations int, converged boolean, "
              "objective double, uids array<string>, scores array<double>, features array<bigint>, "
              "coefficients array<double>, peak_rss_mb double")


def _coefficient_map(entries: list[dict[str, Any]] | None) -> dict[FeatureKey, float]:
    return {(e["name"], e["term"]): e["value"] for e in entries or ()}


def entity_problem(row: dict[str, Any], config: RandomEffectConfig, intercept: bool,
                   names: np.ndarray, terms: np.ndarray) -> EntityProblem:
    """One entity's GLM from its partition row (with the previous model's ``warm_means`` and
    ``prior_means`` / ``prior_variances`` when joined, and the other coordinates' ``score_offsets``)."""
    features = np.asarray(row["features"], dtype=np.int64)
    d, n = len(features), row["n_rows"]
    x = np.zeros((n, d))
    row_of = np.repeat(np.arange(n), row["row_nnz"])
    x[row_of, np.searchsorted(features, np.asarray(row["indices"], dtype=np.int64))] = row["vals"]
    l2 = np.full(d, config.l2)
    if intercept:
        l2[features == 0] = config.intercept_weight
    warm, prior = row.get("warm_means"), row.get("prior_means")
    # feature keys only for an entity with a previous model (most entities of a first run have none)
    keys = list(zip(names[features].tolist(), terms[features].tolist(), strict=True)) \
        if warm or prior is not None else []
    x0 = coefficients_at(_coefficient_map(warm), keys) if warm else np.zeros(d)
    prior_mean = prior_precision = None
    if prior is not None:
        prior_mean, prior_precision = prior_at(_coefficient_map(prior),
                                               _coefficient_map(row.get("prior_variances")), keys,
                                               config.incremental_weight)
    offsets = np.asarray(row["offsets"], dtype=np.float64)
    if row.get("score_offsets") is not None:
        offsets = offsets + np.asarray(row["score_offsets"], dtype=np.float64)
    return EntityProblem(row["entity_id"], x, np.asarray(row["labels"]), np.asarray(row["weights"]),
                         offsets, l2, np.full(d, config.l1), x0, prior_mean, prior_precision)


def solve_batches(batches: Iterable[pa.RecordBatch], config: RandomEffectConfig, intercept: bool,
                  names: np.ndarray, terms: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: solve each batch of entities together."""
    settings = SolverSettings(task=config.task, max_iterations=config.max_iterations, gtol=config.gtol)
    for batch in batches:
        rows = batch.to_pylist()
        problems = [entity_problem(r, config, intercept, names, terms) for r in rows]
        solutions = solve_entities(problems, settings, want_hessian=config.variance != "none")
        out: dict[str, list[Any]] = {name: [] for name in RESULT_SCHEMA.names}
        for row, problem, solution in zip(rows, problems, solutions, strict=True):
            features = np.asarray(row["features"], dtype=np.int64)
            keep = np.abs(solution.coefficients) >= config.sparsity_threshold if config.sparsity_threshold \
                else np.ones(len(features), dtype=bool)
            out["entity_id"].append(row["entity_id"])
            out["means"].append([{"name": names[g], "term": terms[g], "value": float(v)}
                                 for g, v, k in zip(features, solution.coefficients, keep, strict=True) if k])
            if config.variance != "none" and solution.hessian is not None:
                var = variances_from_hessian(solution.hessian, config.variance)
                out["variances"].append([{"name": names[g], "term": terms[g], "value": float(v)}
                                         for g, v, k in zip(features, var, keep, strict=True) if k])
            else:
                out["variances"].append(None)
            out["iterations"].append(solution.iterations)
            out["converged"].append(solution.converged)
            out["objective"].append(solution.objective)
            out["uids"].append(row["uids"])
            out["scores"].append((problem.x @ solution.coefficients).tolist())
            out["features"].append(features.tolist())
            out["coefficients"].append(solution.coefficients.tolist())
            out["peak_rss_mb"].append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        yield pa.RecordBatch.from_pydict(out, schema=RESULT_SCHEMA)
