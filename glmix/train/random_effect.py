"""Random effects: one GLM per entity, the numpy side of the Spark stage (jobs/train_random_effect).

An entity arrives as one row of its partition (jobs/partition_random_effect: its rows' labels,
weights, offsets and features projected onto its own feature set); ``solve_batches`` is the body of
the stage's ``mapInArrow``: it turns each Arrow batch of entities into problems, solves them
together with the batched Newton solver (glmix.glm.batched_newton) and returns a batch of results
(coefficients by feature name and term, variances, scores of the entity's rows). With ``l2: auto``,
``prior_posteriors`` is the body of the passes that learn the prior variances first
(glmix.train.prior_variance). No Spark here: the same functions serve tests and benchmarks on plain
Arrow batches.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Iterator
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from glmix.glm.batched_newton import EntityProblem, EntitySolution, SolverSettings, solve_entities
from glmix.glm.losses import Loss
from glmix.glm.normalization import Normalization
from glmix.settings import Task
from glmix.train.prior_variance import PRIOR_KINDS, Moments, Posteriors, PriorKind, PriorSearch, Residuals
from glmix.train.warm_start import (
    FeatureKey,
    PreviousModels,
    VarianceKind,
    coefficients_at,
    prior_at,
    variances_from_diagonal,
    variances_from_hessian,
)

Weight = float | Literal["auto"]


class RandomEffectConfig(PreviousModels, PriorSearch):
    task: Task
    l2: Weight = Field(1.0, description="the slopes' L2 weight, or auto: learned from the data (and the "
                                        "intercept's too unless intercept_l2 is given)")
    l1: float = Field(0.0, ge=0)
    regularize_intercept: bool = Field(True, description="small entities need it: a separable entity "
                                                         "would otherwise push its intercept to infinity")
    intercept_l2: Weight | None = Field(None, description="the intercept's L2 weight (default: l2), or auto: "
                                                          "entity biases are often wider than their slopes")
    max_iterations: int = Field(50, ge=1)
    gtol: float = Field(1e-10, ge=0)
    variance: VarianceKind = "none"
    sparsity_threshold: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _weights_are_usable(self) -> RandomEffectConfig:
        for name in ("l2", "intercept_l2"):
            if isinstance(getattr(self, name), float) and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 or auto")
        if self.intercept_l2 is not None and not self.regularize_intercept:
            raise ValueError("intercept_l2 is set but regularize_intercept is off")
        if self.learned and (self.prior or self.production_prior):
            raise ValueError("l2: auto learns the prior from the data; it cannot be combined with an incremental prior")
        if self.learned and self.l1:
            raise ValueError("l2: auto learns a Gaussian prior, which an L1 penalty would change; set l1 to 0")
        return self

    @property
    def learned(self) -> tuple[PriorKind, ...]:
        """The kinds of coefficient whose prior variance is learned (``auto``)."""
        intercept = self.l2 if self.intercept_l2 is None else self.intercept_l2
        return tuple(kind for kind, weight in zip(PRIOR_KINDS, (intercept, self.l2), strict=True)
                     if weight == "auto" and (kind == "slopes" or self.regularize_intercept))

    def with_prior_variances(self, variances: dict[PriorKind, float]) -> RandomEffectConfig:
        """This config with the learned kinds' weights set to 1 / their variance."""
        update: dict[str, float] = {}
        if "slopes" in variances:
            update["l2"] = 1.0 / variances["slopes"]
        if "intercept" in variances:
            update["intercept_l2"] = 1.0 / variances["intercept"]
        return self.model_copy(update=update)

    @property
    def slope_weight(self) -> float:
        if self.l2 == "auto":
            raise ValueError("l2 is auto: the prior variances are learned before solving")
        return self.l2

    @property
    def intercept_weight(self) -> float:
        """The intercept's L2 weight: 0 when it is not regularized, else intercept_l2 or l2."""
        if not self.regularize_intercept:
            return 0.0
        weight = self.l2 if self.intercept_l2 is None else self.intercept_l2
        if weight == "auto":
            raise ValueError("intercept_l2 is auto: the prior variances are learned before solving")
        return weight


POSTERIORS_SCHEMA = pa.schema([(name, pa.int64() if name in Posteriors.INTEGERS else pa.float64())
                               for name in Posteriors.columns()])
POSTERIORS_DDL = ", ".join(f"{f.name} {'bigint' if f.type == pa.int64() else 'double'}" for f in POSTERIORS_SCHEMA)
POSTERIOR_STACK_VALUES = 1 << 21   # padded values (entities x rows x dimension) per stack of posteriors
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
                   names: np.ndarray, terms: np.ndarray, normalization: Normalization | None = None) -> EntityProblem:
    """One entity's GLM from its partition row (with the previous model's ``warm_means`` and
    ``prior_means`` / ``prior_variances`` when joined, and the other coordinates' ``score_offsets``);
    with a shard's ``normalization``, in the normalized space (its rows and its warm start)."""
    features = np.asarray(row["features"], dtype=np.int64)
    d, n = len(features), row["n_rows"]
    x = np.zeros((n, d))
    row_of = np.repeat(np.arange(n), row["row_nnz"])
    x[row_of, np.searchsorted(features, np.asarray(row["indices"], dtype=np.int64))] = row["vals"]
    l2 = np.full(d, config.slope_weight)
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
    if normalization is not None:
        projected = normalization.project(features)
        x, x0 = projected.normalize_rows(x), projected.to_normalized(x0)
    return EntityProblem(row["entity_id"], x, np.asarray(row["labels"]), np.asarray(row["weights"]),
                         offsets, l2, np.full(d, config.l1), x0, prior_mean, prior_precision)


def _original_variances(hessian: np.ndarray, kind: VarianceKind, projected: Normalization | None) -> np.ndarray:
    """The variances of an entity's original coefficients from the Hessian in the solver's space."""
    if projected is None:
        return variances_from_hessian(hessian, kind)
    if kind == "full":
        return projected.variances_to_original(np.linalg.pinv(hessian))
    inverse = np.linalg.inv(projected.matrix())       # SIMPLE: 1 / the diagonal of the Hessian in b
    return variances_from_diagonal(np.diag(inverse.T @ hessian @ inverse))


def solve_batches(batches: Iterable[pa.RecordBatch], config: RandomEffectConfig, intercept: bool,
                  names: np.ndarray, terms: np.ndarray, normalization: Normalization | None = None
                  ) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: solve each batch of entities together (in a normalized shard's space,
    their models then taken back to the original one)."""
    settings = SolverSettings(task=config.task, max_iterations=config.max_iterations, gtol=config.gtol)
    keys = _FeatureKeys(pa.array(names, pa.string()), pa.array(terms, pa.string()))
    for batch in batches:
        if not batch.num_rows:
            continue
        rows = entity_rows(batch)
        problems = [entity_problem(r, config, intercept, names, terms, normalization) for r in rows]
        solutions = solve_entities(problems, settings, want_hessian=config.variance != "none")
        yield _results(batch, rows, problems, solutions, config, keys, normalization)


_NUMERIC_LISTS = ("features", "labels", "weights", "offsets", "row_nnz", "indices", "vals", "score_offsets")
_OBJECT_COLUMNS = ("entity_id", "n_rows", "warm_means", "prior_means", "prior_variances")


def entity_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """A batch's entities as the rows ``entity_problem`` reads, their numeric lists as numpy views of
    the batch: Arrow's ``to_pylist`` would box every value (half a training stage's time)."""
    columns: dict[str, list[Any]] = {}
    for name in (*_NUMERIC_LISTS, *_OBJECT_COLUMNS):
        if name not in batch.schema.names:
            continue
        column = batch.column(name)
        if name in _NUMERIC_LISTS and not column.null_count:
            bounds = column.offsets.to_numpy().tolist()
            values = column.values.to_numpy(zero_copy_only=False)
            columns[name] = [values[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        else:
            columns[name] = column.to_pylist()
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class _FeatureKeys(NamedTuple):
    names: pa.Array
    terms: pa.Array

    def entries(self, features: np.ndarray, values: np.ndarray, lengths: np.ndarray) -> pa.Array:
        """Each entity's (name, term, value) list: ``lengths`` entries each, from the flat arrays."""
        struct = pa.StructArray.from_arrays([self.names.take(features), self.terms.take(features),
                                             pa.array(values, pa.float64())], fields=list(NTV))
        return pa.ListArray.from_arrays(_offsets(lengths), struct)


def _offsets(lengths: np.ndarray) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())


def _results(batch: pa.RecordBatch, rows: list[dict[str, Any]], problems: list[EntityProblem],
             solutions: list[EntitySolution], config: RandomEffectConfig, keys: _FeatureKeys,
             normalization: Normalization | None) -> pa.RecordBatch:
    """The batch's results, built column by column from flat arrays (the coefficients taken back to
    the original space, those under ``sparsity_threshold`` dropped from ``means`` and ``variances``)."""
    features = [np.asarray(r["features"], dtype=np.int64) for r in rows]
    projected = [normalization.project(f) if normalization is not None else None for f in features]
    original = [p.to_original(s.coefficients) if p is not None else s.coefficients
                for p, s in zip(projected, solutions, strict=True)]
    flat_features, flat_b = np.concatenate(features), np.concatenate(original)
    keep = np.abs(flat_b) >= config.sparsity_threshold if config.sparsity_threshold \
        else np.ones(len(flat_b), dtype=bool)
    entity_of = np.repeat(np.arange(len(rows)), [len(f) for f in features])
    kept = np.bincount(entity_of[keep], minlength=len(rows))
    means = keys.entries(flat_features[keep], flat_b[keep], kept)
    if config.variance != "none" and all(s.hessian is not None for s in solutions):
        variances = np.concatenate([_original_variances(s.hessian, config.variance, p)   # type: ignore[arg-type]
                                    for s, p in zip(solutions, projected, strict=True)])
        variance_lists = keys.entries(flat_features[keep], variances[keep], kept)
    else:
        variance_lists = pa.nulls(len(rows), pa.list_(NTV))
    scores = [p.x @ s.coefficients for p, s in zip(problems, solutions, strict=True)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    columns = {
        "entity_id": batch.column("entity_id"), "means": means, "variances": variance_lists,
        "iterations": pa.array([s.iterations for s in solutions]), "converged": pa.array([s.converged for s in solutions]),
        "objective": pa.array([s.objective for s in solutions]), "uids": batch.column("uids"),
        "scores": _lists(scores), "features": _lists(features), "coefficients": _lists(original),
        "peak_rss_mb": pa.array(np.full(len(rows), peak))}
    return pa.RecordBatch.from_arrays([columns[f.name].cast(f.type) for f in RESULT_SCHEMA], schema=RESULT_SCHEMA)


def _lists(arrays: list[np.ndarray]) -> pa.Array:
    return pa.ListArray.from_arrays(_offsets(np.array([len(a) for a in arrays], dtype=np.int64)),
                                    pa.array(np.concatenate(arrays) if arrays else np.zeros(0)))


def posteriors(problems: list[EntityProblem], intercepts: list[np.ndarray], settings: SolverSettings) -> Posteriors:
    """Solve ``problems`` and sum their posteriors (``intercepts``: each problem's intercept column
    mask): per kind of coefficient the squared means, the variances and the Laplace term
    sum_i w_i l3(m_i) (x_i . v) x_i' S x_i, where l3 is the loss's third derivative, S the inverse
    Hessian and v = -S (b restricted to the kind) how the optimum moves with that kind's L2 weight
    (glmix.train.prior_variance). Entities of one dimension go through in stacks (sorted by rows,
    padded with weight-0 rows), as the solver's blocks do."""
    loss = Loss(settings.task)
    solutions = solve_entities(problems, settings, want_hessian=True)
    sums = Posteriors({})
    dims = np.array([p.x.shape[1] for p in problems], dtype=np.int64)
    rows = np.array([len(p.y) for p in problems], dtype=np.int64)
    for d in np.unique(dims).tolist():
        same = np.flatnonzero(dims == d)
        same = same[np.argsort(rows[same], kind="stable")]
        start = 0
        while start < len(same):      # a stack of at most POSTERIOR_STACK_VALUES padded values
            end = start + 1
            while end < len(same) and (end - start + 1) * int(rows[same[end]]) * max(d, 1) <= POSTERIOR_STACK_VALUES:
                end += 1
            members = same[start:end]
            sums += _stacked_posteriors([problems[i] for i in members], [intercepts[i] for i in members],
                                        [solutions[i] for i in members], int(rows[same[end - 1]]), d, loss)
            start = end
    return sums


def _stacked_posteriors(problems: list[EntityProblem], intercepts: list[np.ndarray],
                        solutions: list[EntitySolution], n: int, d: int, loss: Loss) -> Posteriors:
    """The posterior sums of entities of dimension d and at most n rows, stacked."""
    size = len(problems)
    x, y, w, o = np.zeros((size, n, d)), np.zeros((size, n)), np.zeros((size, n)), np.zeros((size, n))
    for i, p in enumerate(problems):
        k = len(p.y)
        x[i, :k], y[i, :k], w[i, :k], o[i, :k] = p.x, p.y, p.w, p.o
    b = np.array([s.coefficients for s in solutions]).reshape(size, d)
    covariance = np.linalg.pinv(np.array([s.hessian for s in solutions]).reshape(size, d, d))
    variances = np.diagonal(covariance, axis1=1, axis2=2)
    l2 = np.array([p.l2 for p in problems]).reshape(size, d)
    margins = np.einsum("bnd,bd->bn", x, b) + o
    leverage = w * loss.third_derivative(margins) * np.einsum("bnd,bde,bne->bn", x, covariance, x)
    is_intercept = np.array(intercepts, dtype=bool).reshape(size, d)
    moments: dict[PriorKind, Moments] = {}
    masks: tuple[tuple[PriorKind, np.ndarray], ...] = (("intercept", is_intercept), ("slopes", ~is_intercept))
    for kind, mask in masks:
        moved = -np.einsum("bde,be->bd", covariance, np.where(mask, b, 0.0))
        moments[kind] = Moments(int(mask.sum()), float(np.sum(np.where(mask, b, 0.0) ** 2)),
                                float(np.sum(np.where(mask, variances, 0.0))),
                                float(np.sum(leverage * np.einsum("bnd,bd->bn", x, moved))))
    return Posteriors(moments, Residuals(int(sum(len(p.y) for p in problems)), float(np.sum(w * (y - margins) ** 2)),
                                         float(np.sum(1.0 - l2 * variances))))


def prior_posteriors(batches: Iterable[pa.RecordBatch], config: RandomEffectConfig, intercept: bool,
                     names: np.ndarray, terms: np.ndarray, normalization: Normalization | None = None
                     ) -> Iterator[pa.RecordBatch]:
    """A pass of learning the prior (``l2: auto``): solve each batch's entities under ``config``'s
    weights and yield one row of sums of their posteriors (glmix.train.prior_variance)."""
    settings = SolverSettings(task=config.task, max_iterations=config.max_iterations, gtol=config.gtol)
    for batch in batches:
        rows = entity_rows(batch)
        problems = [entity_problem(r, config, intercept, names, terms, normalization) for r in rows]
        intercepts = [np.asarray(r["features"]) == 0 if intercept else np.zeros(len(r["features"]), dtype=bool)
                      for r in rows]
        yield pa.RecordBatch.from_pylist([posteriors(problems, intercepts, settings).to_row()],
                                         schema=POSTERIORS_SCHEMA)
