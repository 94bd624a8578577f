"""Solving many small GLMs at once: blocks of entities by batched Newton with numpy linear algebra.

GDMix solves one entity at a time with scipy L-BFGS in a Python loop; Photon ML runs one Breeze
optimization per entity. Here entities of the same projected dimension d (and similar row count,
rounded up to a power of two; padding rows have weight 0) form a block; each Newton iteration is a
few batched matrix products and one batched ``np.linalg.solve`` for the whole block, with a per-entity
backtracking line search and per-entity convergence. A GLM with L2 is smooth and strongly convex,
so Newton reaches the optimum to machine precision in a handful of iterations.

Entities with an L1 penalty, or whose dimension is too large for a dense d x d Hessian, fall back
to the shared L-BFGS / OWL-QN (glmix.optim), one entity at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from glmix.config import Task
from glmix.losses import Loss
from glmix.optim import minimize

NEWTON_MAX_DIMENSION = 256
ARMIJO_C1 = 1e-4


@dataclass
class EntityProblem:
    """One entity's data, projected onto its own features (dense, small)."""

    entity_id: str
    x: np.ndarray            # (n, d)
    y: np.ndarray            # (n,)
    w: np.ndarray            # (n,)
    o: np.ndarray            # (n,)
    l2: np.ndarray           # (d,) L2 weight per coefficient (0 for an unregularized intercept)
    l1: np.ndarray           # (d,)
    x0: np.ndarray           # (d,) starting point (warm start) or zeros
    prior_mean: np.ndarray | None = None
    prior_precision: np.ndarray | None = None


@dataclass
class EntitySolution:
    entity_id: str
    coefficients: np.ndarray
    objective: float
    iterations: int
    converged: bool
    hessian: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SolverSettings:
    task: Task
    max_iterations: int = 50
    gtol: float = 1e-10
    ftol: float = 1e-15


def entity_objective(problem: EntityProblem, task: Task, b: np.ndarray) -> tuple[float, np.ndarray]:
    """Objective and gradient of one entity (smooth part: loss, L2 and prior)."""
    loss = Loss(task)
    m = problem.x @ b + problem.o
    f = float(problem.w @ loss.value(problem.y, m) + 0.5 * np.sum(problem.l2 * b * b))
    g = problem.x.T @ (problem.w * loss.derivative(problem.y, m)) + problem.l2 * b
    if problem.prior_precision is not None:
        delta = b - problem.prior_mean
        f += 0.5 * float(np.sum(problem.prior_precision * delta * delta))
        g = g + problem.prior_precision * delta
    return f, g


def _padded_rows(n: int) -> int:
    """Round a row count up to one of a few sizes (at most ~25% padding), so similar entities share a block."""
    step = max(4, 1 << max(0, n.bit_length() - 3))
    return -(-max(n, 1) // step) * step


def solve_entities(problems: list[EntityProblem], settings: SolverSettings,
                   want_hessian: bool = False) -> list[EntitySolution]:
    """Solve every entity; blocks of equal (dimension, padded rows) go through batched Newton."""
    solutions: list[EntitySolution | None] = [None] * len(problems)
    blocks: dict[tuple[int, int], list[int]] = {}
    for position, problem in enumerate(problems):
        d = problem.x.shape[1]
        if np.count_nonzero(problem.l1) or d > NEWTON_MAX_DIMENSION:   # count_nonzero: no ufunc overhead
            solutions[position] = _solve_one_quasi_newton(problem, settings, want_hessian)
        else:
            blocks.setdefault((d, _padded_rows(len(problem.y))), []).append(position)
    for (d, n), positions in blocks.items():
        block = [problems[i] for i in positions]
        for position, solution in zip(positions, _newton_block(block, d, n, settings, want_hessian), strict=True):
            solutions[position] = solution
    return solutions  # type: ignore[return-value]


def _stack(block: list[EntityProblem], d: int, n: int) -> tuple[np.ndarray, ...]:
    size = len(block)
    lengths = np.array([len(p.y) for p in block])
    entity = np.repeat(np.arange(size), lengths)
    row = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    x = np.zeros((size, n, d))
    x[entity, row] = np.concatenate([p.x for p in block])
    y, w, o = np.zeros((size, n)), np.zeros((size, n)), np.zeros((size, n))  # padding rows: weight 0
    y[entity, row] = np.concatenate([p.y for p in block])
    w[entity, row] = np.concatenate([p.w for p in block])
    o[entity, row] = np.concatenate([p.o for p in block])
    l2 = np.stack([p.l2 for p in block])
    b = np.stack([p.x0 for p in block]).astype(float)
    has_prior = any(p.prior_precision is not None for p in block)
    mean = np.stack([p.prior_mean if p.prior_mean is not None else np.zeros(d) for p in block]) if has_prior \
        else np.zeros((size, d))
    precision = np.stack([p.prior_precision if p.prior_precision is not None else np.zeros(d) for p in block]) \
        if has_prior else np.zeros((size, d))
    return x, y, w, o, l2 + precision, mean, precision, b


def _newton_block(block: list[EntityProblem], d: int, n: int, settings: SolverSettings,
                  want_hessian: bool) -> list[EntitySolution]:
    loss = Loss(settings.task)
    x, y, w, o, ridge, mean, precision, b = _stack(block, d, n)
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))
    l2 = ridge - precision

    f, m = _evaluate_subset(x, y, w, o, l2, mean, precision, b, loss)
    iterations = np.zeros(len(block), dtype=int)
    active = np.ones(len(block), dtype=bool)
    for _ in range(settings.max_iterations + 1):
        # only the entities still moving are touched: most of a block converges in a few iterations
        idx = np.flatnonzero(active)
        g = _gradient(*_rows((x, y, w, m, l2, mean, precision, b), idx), loss)
        gnorm = np.max(np.abs(g), axis=1) if d else np.zeros(len(idx))
        moving = gnorm > settings.gtol * np.maximum(1.0, np.max(np.abs(b[idx]), axis=1) if d else 1.0)
        moving &= iterations[idx] < settings.max_iterations
        active[idx[~moving]] = False
        idx, g = idx[moving], g[moving]
        if not len(idx):
            break
        hessian = _hessian(*_rows((x, xt, y, w, m, ridge), idx), loss)
        # a tiny ridge keeps an unregularized, not-yet-identified direction solvable
        step = np.linalg.solve(hessian + 1e-12 * np.eye(d), g[..., None])[..., 0]
        slope = np.einsum("bd,bd->b", g, step)
        # a Newton decrement at rounding level: nothing left to gain
        done = slope <= settings.ftol * np.maximum(1.0, np.abs(f[idx]))
        active[idx[done]] = False
        idx, step, slope = idx[~done], step[~done], slope[~done]
        t = 1.0
        while len(idx) and t > 1e-10:  # backtrack only the entities whose step was not accepted yet
            trial = b[idx] - t * step
            f_trial, m_trial = _evaluate_subset(*_rows((x, y, w, o, l2, mean, precision), idx), trial, loss)
            ok = f_trial <= f[idx] - ARMIJO_C1 * t * slope
            rows = idx[ok]
            decrease = f[rows] - f_trial[ok]
            b[rows], f[rows], m[rows] = trial[ok], f_trial[ok], m_trial[ok]
            iterations[rows] += 1
            active[rows[decrease <= settings.ftol * np.maximum(1.0, np.abs(f[rows]))]] = False
            idx, step, slope = idx[~ok], step[~ok], slope[~ok]
            t *= 0.5
        active[idx] = False  # no decrease possible: at the optimum to machine precision
    g = _gradient(x, y, w, m, l2, mean, precision, b, loss)
    converged = (np.max(np.abs(g), axis=1) if d else np.zeros(len(block))) <= np.maximum(
        1e-6, 1e-6 * np.abs(f))
    hessian = _hessian(x, xt, y, w, m, ridge, loss) if want_hessian else None
    return [EntitySolution(p.entity_id, b[i], float(f[i]), int(iterations[i]), bool(converged[i]),
                           hessian[i] if hessian is not None else None)
            for i, p in enumerate(block)]


def _rows(arrays: tuple[np.ndarray, ...], idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """The block's arrays for the entities ``idx``: views of the whole block when that is all of them
    (the first iterations), copies only once some have converged."""
    if len(idx) == len(arrays[0]):
        return arrays
    return tuple(a[idx] for a in arrays)


def _gradient(x, y, w, m, l2, mean, precision, b, loss: Loss) -> np.ndarray:
    return _xt_times(x, w * loss.derivative(y, m)) + l2 * b + precision * (b - mean)


def _hessian(x, xt, y, w, m, ridge, loss: Loss) -> np.ndarray:
    """X^T diag(w l'') X + ridge for every entity of the (sub)block: one batched BLAS call."""
    d = x.shape[2]
    hessian = np.matmul(xt * (w * loss.second_derivative(y, m))[:, None, :], x)
    hessian[:, np.arange(d), np.arange(d)] += ridge
    return hessian


def _xt_times(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """X_b^T r_b for every entity b of the block."""
    return np.matmul(r[:, None, :], x)[:, 0, :]


def _evaluate_subset(x, y, w, o, l2, mean, precision, b, loss: Loss) -> tuple[np.ndarray, np.ndarray]:
    m = np.matmul(x, b[:, :, None])[:, :, 0] + o
    delta = b - mean
    f = (np.sum(w * loss.value(y, m), axis=1) + 0.5 * np.sum(l2 * b ** 2, axis=1)
         + 0.5 * np.sum(precision * delta ** 2, axis=1))
    return f, m


def _solve_one_quasi_newton(problem: EntityProblem, settings: SolverSettings,
                            want_hessian: bool) -> EntitySolution:
    result = minimize(lambda b: entity_objective(problem, settings.task, b), problem.x0, l1=problem.l1,
                      max_iter=max(500, settings.max_iterations), ftol=settings.ftol, gtol=settings.gtol)
    hessian = None
    if want_hessian:
        m = problem.x @ result.x + problem.o
        h = problem.w * Loss(settings.task).second_derivative(problem.y, m)
        hessian = problem.x.T @ (problem.x * h[:, None]) + np.diag(problem.l2 + (
            problem.prior_precision if problem.prior_precision is not None else 0.0))
    return EntitySolution(problem.entity_id, result.x, result.objective, result.iterations,
                          result.converged, hessian)


def variances(hessian: np.ndarray, kind: str) -> np.ndarray:
    """SIMPLE = 1/diag(H); FULL = diag(H^-1)."""
    if kind == "simple":
        return 1.0 / np.maximum(np.diag(hessian), 1e-12)
    return np.diag(np.linalg.pinv(hessian)).copy()
