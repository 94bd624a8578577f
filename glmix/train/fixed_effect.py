"""Fixed-effect trainer: one GLM on all data, by one or several TensorFlow workers (GDMix's design).

    python -m glmix.train.fixed_effect --train PREPARED --output MODEL_DIR --task logistic --l2 1.0 \
        [--validation PREPARED_VALIDATION] [--l1 0.1] [--variance simple]

Each worker loads its share of the prepared rows once (CSR, see glmix.data.sparse_rows) into TensorFlow
(padded chunks, XLA-compiled; see glmix.glm.objective) and, every iteration, computes its local
loss and gradient there; TensorFlow's collective all-reduce
(MultiWorkerMirroredStrategy, from TF_CONFIG) sums them; every worker then runs the same
deterministic L-BFGS / OWL-QN step (glmix.glm.optim), so all workers hold the same coefficients and no
parameter server is needed. Without TF_CONFIG it is a single process.

Objective:  sum_i w_i loss(y_i, x_i.b + offset_i) + l2/2 |b|^2 + l1 |b|_1   (intercept unregularized
unless --regularize-intercept), plus, for incremental training, incremental_weight/2 *
sum_j (b_j - mu_j)^2 / sigma_j^2 over the prior model's coefficients.

``--l2 auto`` learns the prior variance of the regularized coefficients first, by the evidence
update glmix.train.prior_variance shares with the random effects: solves warm-started from each
other, each followed by the posterior variances (the full Hessian up to FULL_VARIANCE_MAX_FEATURES
features, 1 / its diagonal beyond: an approximation that ignores correlations), then the final
solve under the learned weight, checkpointed as usual (a restarted attempt learns again — the
search is deterministic — and resumes the final solve). The Laplace term of the random effects is
left out here: it shrinks with the rows per coefficient, which a fixed effect has many of.

Output (published atomically by the chief): model/ (Model Avro, by feature name and term),
scores/train/ and scores/validation/ (Parquet uid, score = x.b), tensorboard/, _report.json.
Optimizer state is checkpointed every k iterations to a sibling directory; a restarted attempt
resumes from it exactly.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from glmix.data.feature_index import FeatureIndex
from glmix.data.sparse_rows import load_rows
from glmix.errors import GlmixError
from glmix.glm.metrics import default_evaluator
from glmix.glm.normalization import Normalization, shard_normalization
from glmix.glm.objective import OBJECTIVES, Objective, configure_tensorflow
from glmix.glm.optim import FunGrad, OptimizeResult, OptimizerState, minimize
from glmix.glm.tron import tron
from glmix.io.scores import offsets_for, write_scores
from glmix.io.storage import SUCCESS_MARKER, copy_tree, join, publish_atomically, storage_for, write_file_atomically
from glmix.model.linear_model import LinearModel, read_models, write_models
from glmix.settings import SHARD_META, Task
from glmix.stage_args import StageArgs
from glmix.train.prior_variance import (
    LearnedPrior,
    Moments,
    Posteriors,
    PriorKind,
    PriorSearch,
    Residuals,
    learn_prior_variances,
)
from glmix.train.warm_start import (
    PreviousModels,
    VarianceKind,
    coefficients_at,
    prior_at,
    variances_from_diagonal,
    variances_from_hessian,
)

FULL_VARIANCE_MAX_FEATURES = 5000
Solve = Callable[..., OptimizeResult]   # (z0, state=None, callback=None): the configured solver


class FixedEffectConfig(PreviousModels, PriorSearch):
    task: Task
    l2: float | Literal["auto"] = Field(0.0, description="the L2 weight, or auto: learned from the data")
    l1: float = Field(0.0, ge=0)
    regularize_intercept: bool = False
    max_iterations: int = Field(1000, ge=1)
    ftol: float = Field(1e-10, ge=0)
    gtol: float = Field(1e-9, ge=0)
    memory: int = Field(10, ge=1)
    variance: VarianceKind = "none"
    checkpoint_every: int = Field(10, ge=1)
    model_id: str = "global"
    compute: Literal["tensorflow", "scipy"] = "tensorflow"
    validation_every: int = Field(1, ge=0, description="0: no per-iteration validation metric")
    precondition: bool = Field(True, description="diagonal (Jacobi) preconditioning of L-BFGS / OWL-QN")
    solver: Literal["lbfgs", "tron"] = Field("lbfgs", description="L-BFGS / OWL-QN, or TRON (trust-region Newton "
                                                                  "with conjugate gradients; no L1)")

    @model_validator(mode="after")
    def _weights_are_usable(self) -> FixedEffectConfig:
        if isinstance(self.l2, float) and self.l2 < 0:
            raise ValueError("l2 must be >= 0 or auto")
        if self.solver == "tron" and self.l1:
            raise ValueError("solver tron needs a smooth objective: no L1 (use lbfgs, whose OWL-QN handles it)")
        if self.l2 == "auto" and (self.l1 or self.prior or self.production_prior):
            raise ValueError("l2: auto learns a Gaussian prior, which neither an L1 penalty nor an incremental "
                             "prior may change")
        return self


@dataclass
class WorkerContext:
    """Who this process is in the job; from TF_CONFIG when present."""

    index: int
    count: int
    run_id: str

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    @classmethod
    def from_environment(cls) -> WorkerContext:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
        cluster = tf_config.get("cluster", {})
        task = tf_config.get("task", {})
        members = cluster.get("chief", []) + cluster.get("worker", [])
        if not members:
            return cls(0, 1, os.environ.get("GLMIX_RUN_ID", f"{os.getpid()}-{time.time_ns()}"))
        index = task.get("index", 0) + (len(cluster.get("chief", [])) if task.get("type") == "worker" else 0)
        return cls(index, len(members), os.environ.get("GLMIX_RUN_ID", "run"))


class Collective:
    """Sums numpy arrays across workers (identity for a single process)."""

    def __init__(self, context: WorkerContext, strategy: Any = None) -> None:
        """``strategy``: an existing MultiWorkerMirroredStrategy to reuse (a process can have only one)."""
        self.context = context
        self._reduce: Callable[[Any], Any] | None = None
        if context.count > 1:
            import tensorflow as tf

            strategy = strategy or tf.distribute.MultiWorkerMirroredStrategy()

            @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
            def reduce(value: Any) -> Any:
                per_replica = strategy.run(tf.identity, args=(value,))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

            self._reduce = reduce

    def sum(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self._reduce is None:
            return arrays
        import tensorflow as tf

        # one collective for all arrays: concatenate, reduce, split
        flat = np.concatenate([np.ravel(a) for a in arrays]).astype(np.float64)
        total = self._reduce(tf.constant(flat)).numpy()
        bounds = np.cumsum([0] + [np.size(a) for a in arrays])
        return [total[lo:hi].reshape(np.shape(a)) for a, lo, hi in zip(arrays, bounds[:-1], bounds[1:], strict=True)]

    def barrier(self) -> None:
        self.sum([np.zeros(1)])


def read_model(uri: str) -> LinearModel:
    """The model of a fixed-effect output directory (or of a directory of Model Avro files)."""
    model_dir = join(uri, "model")
    return next(read_models(model_dir if storage_for(model_dir).exists(model_dir) else uri))


def _previous_coefficients(index: FeatureIndex, uri: str | None) -> np.ndarray:
    """The warm start: a previous model's coefficients by feature name and term (zeros without one)."""
    return coefficients_at(read_model(uri).means, index.keys()) if uri else np.zeros(index.size)


def _prior(index: FeatureIndex, uri: str | None, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The incremental prior's means and precisions by index (zeros without a prior model)."""
    if not uri:
        return np.zeros(index.size), np.zeros(index.size)
    model = read_model(uri)
    if model.variances is None:
        raise GlmixError(f"{uri}: incremental training needs a prior model with variances")
    return prior_at(model.means, model.variances, index.keys(), weight)


@dataclass
class TrainResult:
    """What a worker's run produced: its report (every worker) and the published model (the chief)."""

    report: dict[str, Any]
    model: LinearModel | None


class Trainer:
    def __init__(self, config: FixedEffectConfig, index: str, train: str, output: str,
                 validation: str | None = None, context: WorkerContext | None = None,
                 offsets: list[str] | None = None, offsets_exclude: str | None = None) -> None:
        self.config = config
        self.train_uri, self.output, self.validation_uri = train, output, validation
        self.offsets, self.offsets_exclude = offsets, offsets_exclude
        self.context = context or WorkerContext.from_environment()
        self.index_dir, self.index = index, FeatureIndex.load(index)
        configure_tensorflow()  # before its runtime starts: the all-reduce uses TensorFlow whatever the compute
        self.checkpoint_dir = sibling_dir(output, "._checkpoints-")
        self.tmp = sibling_dir(output, f"._tmp-{self.context.run_id}-")

    def penalty_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """The L2 and L1 weight of each coefficient (with l2: auto, the regularized ones' L2 is 1,
        the search's start)."""
        mask = np.ones(self.index.size)
        if self.index.shard.intercept and not self.config.regularize_intercept:
            mask[0] = 0.0
        return (1.0 if self.config.l2 == "auto" else self.config.l2) * mask, self.config.l1 * mask

    def run(self) -> TrainResult:
        started = time.monotonic()
        c = self.config
        load_started = time.monotonic()
        rows = load_rows(self.train_uri, self.context.index, self.context.count)
        if self.offsets:
            rows.offset = rows.offset + offsets_for(rows.uid, self.offsets, self.offsets_exclude)
        uid = rows.uid
        data: dict[str, Any] = {"rows_this_worker": rows.rows, "nnz_this_worker": rows.nnz,
                                "data_bytes_this_worker": rows.nbytes}
        # After loading: TensorFlow's runtime (which the all-reduce starts) would add to the loading's peak.
        collective = Collective(self.context)
        objective = OBJECTIVES[c.compute](rows, self.index.size, c.task, release_rows=True)
        del rows
        compile_seconds = objective.compile()
        load_seconds = time.monotonic() - load_started
        l2, l1 = self.penalty_masks()
        warm_start, prior = c.previous(c.model_id)
        prior_mean, prior_precision = _prior(self.index, prior, c.incremental_weight)
        validation = load_rows(self.validation_uri) if (self.validation_uri and self.context.is_chief) else None
        validation_objective = OBJECTIVES[c.compute](validation, self.index.size, c.task) if validation else None

        norm = self.normalization()

        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            """The objective of the solver's variable ``z`` (the normalized space; ``b = z`` without
            normalization): the loss and the prior at the original coefficients, L1 and L2 on ``z``."""
            b = norm.to_original(z)
            local_f, local_g = objective.value_and_gradient(b)
            total_f, g = collective.sum([local_f, local_g])
            delta = b - prior_mean
            f = float(total_f[0]) + 0.5 * float(np.sum(l2 * z * z)) + 0.5 * float(np.sum(prior_precision * delta * delta))
            return f, norm.gradient_to_normalized(g + prior_precision * delta) + l2 * z

        solve = self._solver(collective, objective, fun, l1, l2, prior_precision, norm)
        b0 = _previous_coefficients(self.index, warm_start)
        learned = None
        if c.l2 == "auto":
            learned, b0 = self._learn_prior(collective, objective, solve, l2, norm, b0, data["rows_this_worker"])
        state = self._load_checkpoint()
        resumed_from = state.iteration if state else None       # before the solver advances the state in place
        evaluator = default_evaluator(c.task)

        validation_curve: list[tuple[int, float]] = []

        def on_iteration(current: OptimizerState) -> None:
            if self.context.is_chief:
                if validation is not None and validation_objective is not None and c.validation_every \
                        and current.iteration % c.validation_every == 0:
                    margin = validation_objective.scores(norm.to_original(current.x)) + validation.offset
                    validation_curve.append((current.iteration, evaluator(validation.label, margin,
                                                                          validation.weight)))
                if current.iteration % c.checkpoint_every == 0:
                    self._checkpoint(current)

        train_started = time.monotonic()
        result = solve(norm.to_normalized(b0), state, on_iteration)
        train_seconds = time.monotonic() - train_started
        coefficients = norm.to_original(result.x)
        variances = self._variances(collective, objective, coefficients, prior_precision, l2, norm)
        data["rows"], data["dispersion"] = self._dispersion(collective, objective, coefficients,
                                                            data["rows_this_worker"])
        train_scores = objective.scores(coefficients)
        # The rows' tensors are freed before the outputs are written (else the run's peak); the
        # traced functions hold the objectives in reference cycles, hence the collection.
        objective = validation_objective = validation = None  # type: ignore[assignment]
        gc.collect()
        tensorboard_dir = (_write_tensorboard(result.history, validation_curve, evaluator.name)
                           if self.context.is_chief else None)
        return self._publish(collective, uid, train_scores, result, coefficients, variances, validation_curve,
                             tensorboard_dir, started, {
            **data, "load_seconds": load_seconds, "compile_seconds": compile_seconds, "train_seconds": train_seconds,
            "resumed_from_iteration": resumed_from,
            **({"learned_prior": learned.to_dict()} if learned else {})})

    # ------------------------------------------------------------------ pieces
    def _solver(self, collective: Collective, objective: Objective, fun: FunGrad, l1: np.ndarray, l2: np.ndarray,
                prior_precision: np.ndarray, norm: Normalization) -> Solve:
        """The configured solver of ``fun`` (the objective of z): L-BFGS / OWL-QN, preconditioned at
        its start, or TRON, whose Hessian-vector products are all-reduced as the gradients are."""
        c = self.config

        def hessian_times(z: np.ndarray, v: np.ndarray) -> np.ndarray:
            b, u = norm.to_original(z), norm.to_original(v)
            (product,) = collective.sum([objective.hessian_times(b, u)])
            in_z: np.ndarray = norm.gradient_to_normalized(product + prior_precision * u) + l2 * v
            return in_z

        def solve(z0: np.ndarray, state: OptimizerState | None = None,
                  callback: Callable[[OptimizerState], None] | None = None) -> OptimizeResult:
            if c.solver == "tron":
                return tron(fun, hessian_times, z0, c.max_iterations, c.ftol, c.gtol, state, callback)
            preconditioner = _preconditioner(collective, objective, norm.to_original(z0), prior_precision, l2, norm) \
                if c.precondition else None
            return minimize(fun, z0, l1=l1, memory=c.memory, max_iter=c.max_iterations, ftol=c.ftol, gtol=c.gtol,
                            state=state, callback=callback, preconditioner=preconditioner)

        return solve

    def _learn_prior(self, collective: Collective, objective: Objective, solve: Solve, l2: np.ndarray,
                     norm: Normalization, b0: np.ndarray, local_rows: int) -> tuple[LearnedPrior, np.ndarray]:
        """``l2: auto``: the prior variance of the regularized coefficients, and the last solve's
        coefficients (the final solve's start). ``l2`` (which the objective reads) is set in place."""
        c, mask = self.config, l2 > 0
        z = norm.to_normalized(b0)

        def posteriors_at(variances: dict[PriorKind, float]) -> Posteriors:
            nonlocal z
            l2[:] = mask / variances["slopes"]
            z = solve(z).x
            b = norm.to_original(z)
            variances_z = self._normalized_variances(collective, objective, b, l2, norm)
            residuals = Residuals()
            if c.task == "linear":      # twice the squared loss: the weighted squared residuals
                local_loss, _ = objective.value_and_gradient(b)
                loss, rows = collective.sum([np.ravel(local_loss), np.array([float(local_rows)])])
                residuals = Residuals(int(rows[0]), 2.0 * float(loss[0]), float(np.sum(1.0 - l2 * variances_z)))
            return Posteriors({"slopes": Moments.of(z[mask], variances_z[mask])}, residuals)

        learned = learn_prior_variances({"slopes": 1.0}, posteriors_at, c.task == "linear", c.prior_iterations,
                                        c.prior_tolerance)
        l2[:] = mask / learned.variances["slopes"]
        return learned, norm.to_original(z)

    def _normalized_variances(self, collective: Collective, objective: Objective, b: np.ndarray, l2: np.ndarray,
                              norm: Normalization) -> np.ndarray:
        """The posterior variances of the solver's variable z (where L2 acts): the diagonal of the
        inverse Hessian up to FULL_VARIANCE_MAX_FEATURES features, 1 / the diagonal beyond."""
        if self.index.size > FULL_VARIANCE_MAX_FEATURES:
            (diagonal,) = collective.sum([objective.hessian_diagonal(b)])
            return variances_from_diagonal(norm.factors ** 2 * diagonal + l2)
        (hessian,) = collective.sum([objective.hessian(b)])
        t = norm.matrix()
        in_z = hessian if norm.is_identity else t.T @ hessian @ t
        in_z[np.diag_indices_from(in_z)] += l2
        return variances_from_hessian(in_z, "full")

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the same problem, data and solver settings."""
        settings = self.config.model_dump(exclude={"checkpoint_every", "validation_every"})
        return json.dumps({"config": settings, "train": self.train_uri, "num_features": self.index.size,
                           "normalization": self.index.shard.normalization,
                           "offsets": self.offsets, "offsets_exclude": self.offsets_exclude}, sort_keys=True)

    def _checkpoint(self, state: OptimizerState) -> None:
        """The optimizer's state, and the run's fingerprint when it is not there yet, so that a
        restarted attempt resumes exactly here (rewritten at every checkpoint, the fingerprint could
        be missing on HDFS, which cannot replace a file in one step, when a kill lands)."""
        path, fingerprint = join(self.checkpoint_dir, "fingerprint.json"), self.fingerprint().encode()
        storage = storage_for(path)
        if not storage.exists(path) or storage.read_bytes(path) != fingerprint:   # a leftover of another run
            write_file_atomically(path, fingerprint)
        write_file_atomically(join(self.checkpoint_dir, "state.npz"), state.to_bytes())

    def _load_checkpoint(self) -> OptimizerState | None:
        """The saved state of an earlier attempt of this same run; a leftover from another run is ignored."""
        path = join(self.checkpoint_dir, "state.npz")
        storage = storage_for(path)
        if not storage.exists(path):
            return None
        fingerprint = join(self.checkpoint_dir, "fingerprint.json")
        if not storage.exists(fingerprint) or storage.read_bytes(fingerprint).decode() != self.fingerprint():
            print(f"ignoring checkpoint {path}: it belongs to a different run", file=sys.stderr)
            return None
        return OptimizerState.from_bytes(storage.read_bytes(path))

    def normalization(self) -> Normalization:
        """The shard's change of variables (glmix.glm.normalization), from the index's statistics."""
        return shard_normalization(self.index_dir, self.index)

    def _variances(self, collective: Collective, objective: Objective, b: np.ndarray, prior_precision: np.ndarray,
                   l2: np.ndarray, norm: Normalization) -> np.ndarray | None:
        """The original coefficients' variances under the objective's curvature: the loss's Hessian
        at ``b``, the prior's precision, and L2 (which acts on the normalized ``z = T^-1 b``)."""
        kind = self.config.variance
        if kind == "none":
            return None
        if kind == "simple":   # the penalty's diagonal in b, exact without shifts
            (diagonal,) = collective.sum([objective.hessian_diagonal(b)])
            return variances_from_diagonal(diagonal + prior_precision + l2 / norm.factors ** 2)
        if self.index.size > FULL_VARIANCE_MAX_FEATURES:
            raise GlmixError(f"FULL variances need a dense {self.index.size}^2 Hessian; use 'simple' above "
                             f"{FULL_VARIANCE_MAX_FEATURES} features")
        (hessian,) = collective.sum([objective.hessian(b)])
        hessian[np.diag_indices_from(hessian)] += prior_precision
        if norm.is_identity:
            hessian[np.diag_indices_from(hessian)] += l2
            return variances_from_hessian(hessian, kind)
        t = norm.matrix()            # cov(b) = T (T^T H T + L2)^-1 T^T
        in_z = t.T @ hessian @ t
        in_z[np.diag_indices_from(in_z)] += l2
        variances: np.ndarray = np.einsum("ij,jk,ik->i", t, np.linalg.pinv(in_z), t)
        return variances

    def _dispersion(self, collective: Collective, objective: Objective, x: np.ndarray,
                    local_rows: int) -> tuple[int, float]:
        """All workers' rows, and the GLM's dispersion: 1 for logistic and Poisson, for a linear task
        Pearson's estimate sum w (y - m)^2 / (rows - features) (twice the squared loss, as
        statsmodels' GLM estimates its scale), which the coefficients' variances are scaled by."""
        if self.config.task != "linear":
            (rows,) = collective.sum([np.array([float(local_rows)])])
            return int(rows[0]), 1.0
        local_loss, _ = objective.value_and_gradient(x)
        loss, rows = collective.sum([np.ravel(local_loss), np.array([float(local_rows)])])
        total = int(rows[0])
        return total, 2.0 * float(loss[0]) / max(total - self.index.size, 1)

    def _publish(self, collective: Collective, uid: np.ndarray, train_scores: np.ndarray, result: OptimizeResult,
                 coefficients: np.ndarray, variances: np.ndarray | None, validation_curve: list[tuple[int, float]],
                 tensorboard_dir: str | None, started: float, facts: dict[str, Any]) -> TrainResult:
        """Every worker writes its scores into the shared temporary directory; the chief publishes. The
        report's ``wall_seconds`` runs from loading the rows to the scores written, so that what the
        launcher adds around a worker (application, container, interpreter start) is the rest of a run."""
        worker = self.context.index
        write_scores(join(self.tmp, "scores", "train", f"part-{worker:05d}.parquet"), uid, train_scores)
        if self.validation_uri:
            part = load_rows(self.validation_uri, worker, self.context.count)
            scorer = OBJECTIVES[self.config.compute](part, self.index.size, self.config.task)
            write_scores(join(self.tmp, "scores", "validation", f"part-{worker:05d}.parquet"), part.uid,
                          scorer.scores(coefficients))
        collective.barrier()
        wall_seconds = time.monotonic() - started
        report = {
            "model_id": self.config.model_id, "task": self.config.task, "workers": self.context.count,
            "iterations": result.iterations, "evaluations": result.evaluations, "final_objective": result.objective,
            "gradient_norm": result.gradient_norm, "stop_reason": result.reason, "converged": result.converged,
            "num_features": self.index.size, "peak_rss_mb_this_worker": _peak_rss_mb(),
            "config": self.config.model_dump(), **facts, "wall_seconds": wall_seconds,
            "history": [{"iteration": i, "objective": f, "gradient_norm": g} for i, f, g in result.history],
            "validation_curve": [{"iteration": i, "value": v} for i, v in validation_curve]}
        if not self.context.is_chief:
            return TrainResult(report, None)
        keys = self.index.keys()
        model = LinearModel(self.config.model_id, self.config.task, dict(zip(keys, coefficients.tolist(), strict=True)),
                            None if variances is None else dict(zip(keys, variances.tolist(), strict=True)))
        storage = storage_for(self.tmp)
        write_models(join(self.tmp, "model"), [model])
        storage.write_bytes(join(self.tmp, SHARD_META), storage.read_bytes(join(self.train_uri, SHARD_META)))
        if tensorboard_dir:
            copy_tree(tensorboard_dir, join(self.tmp, "tensorboard"))
            shutil.rmtree(tensorboard_dir, ignore_errors=True)
        storage.write_bytes(join(self.tmp, "_report.json"), json.dumps(report, indent=2, default=float).encode())
        publish_directory(self.tmp, self.output)
        storage.delete(self.checkpoint_dir)
        return TrainResult(report, model)


def _write_tensorboard(history: list[tuple[int, float, float]], validation_curve: list[tuple[int, float]],
                       metric_name: str) -> str:
    """Per-iteration loss, gradient norm and validation metric as TensorBoard events, written once
    training is over, into a new local directory (returned). tensorboardX writes the same event files
    as tf.summary without importing TensorFlow (4 s), so a `compute: scipy` run never loads it; it
    writes local files only, so the events go to local disk and are copied into the output."""
    import tempfile

    from tensorboardX import SummaryWriter

    directory = tempfile.mkdtemp(prefix="glmix-tensorboard-")
    with SummaryWriter(directory) as writer:
        for step, value, gnorm in history:
            writer.add_scalar("loss", value, step)
            writer.add_scalar("gradient_norm", gnorm, step)
        for step, value in validation_curve:
            writer.add_scalar(f"validation/{metric_name}", value, step)
    return directory


def _preconditioner(collective: Collective, objective: Objective, b0: np.ndarray, prior_precision: np.ndarray,
                    l2: np.ndarray, norm: Normalization) -> np.ndarray:
    """1 / diag(H) at the initial point (all workers' rows; the same on every worker, so the
    steps stay identical), in the solver's space (normalized: f^2 H_jj, leaving out the shifts'
    cross terms). Computed from the start, not from a resumed point, so a resumed run uses the
    same one as the run it continues."""
    (diagonal,) = collective.sum([objective.hessian_diagonal(b0)])
    diagonal = norm.factors ** 2 * (diagonal + prior_precision) + l2
    return np.where(diagonal > 0, 1.0 / np.where(diagonal > 0, diagonal, 1.0), 1.0)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sibling_dir(uri: str, prefix: str) -> str:
    parent, _, name = uri.rstrip("/").rpartition("/")
    return f"{parent}/{prefix}{name}" if parent else f"{prefix}{name}"


def publish_directory(tmp: str, output: str) -> None:
    """Replace ``output`` with the fully written ``tmp`` (see storage.publish_atomically)."""
    with publish_atomically(output) as staging:
        storage = storage_for(output)
        storage.delete(staging)
        storage.rename(tmp, staging)
    assert storage_for(output).exists(join(output, SUCCESS_MARKER))


class FixedEffectArgs(StageArgs, FixedEffectConfig):
    """The trainer's command line: the config's keys as flags, plus the data and output paths."""

    PROG: ClassVar[str] = "glmix.train.fixed_effect"

    index: str = Field(description="the shard's index (jobs/index_features output)")
    train: str = Field(description="prepared fixed-effect data (jobs/prepare_fixed_effect)")
    validation: str | None = Field(None, description="prepared validation data (same index)")
    output: str
    offsets: list[str] | None = Field(None, description="scores of the other coordinates, summed: uid/score sets, "
                                                        "or ScoringResult Avro")
    offsets_exclude: str | None = Field(None, description="this coordinate's name in the offsets")

    def config(self) -> FixedEffectConfig:
        return FixedEffectConfig.model_validate(self.model_dump(include=set(FixedEffectConfig.model_fields)))


def main(argv: list[str] | None = None) -> int:
    try:
        args = FixedEffectArgs.from_argv(argv, __doc__)
        report = Trainer(args.config(), args.index, args.train, args.output, args.validation,
                         offsets=args.offsets, offsets_exclude=args.offsets_exclude).run().report
    except GlmixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = {k: report[k] for k in ("iterations", "final_objective", "gradient_norm", "stop_reason",
                                      "train_seconds", "workers")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
