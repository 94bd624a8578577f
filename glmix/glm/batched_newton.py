"""Solving many small GLMs at once: blocks of entities by batched Newton with numpy linear algebra.

GDMix solves one entity at a time with scipy L-BFGS in a Python loop; Photon ML runs one Breeze
optimization per entity. Here entities of the same projected dimension d (and similar row count,
rounded up to one of a few sizes; padding rows have weight 0) form a block; each Newton iteration is a
few batched matrix products and one batched ``np.linalg.solve`` for the whole block, with a per-entity
backtracking line search and per-entity convergence. A GLM with L2 is smooth and strongly convex,
so Newton reaches the optimum to machine precision in a handful of iterations.

Entities with an L1 penalty, or whose dimension is too large for a dense d x d Hessian, fall back
to the shared L-BFGS / OWL-QN (glmix.glm.optim), one entity at a time.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field

import numpy as np

from glmix.glm.losses import Loss
from glmix.glm.optim import minimize
from glmix.settings import Task

NEWTON_MAX_DIMENSION = 256
ARMIJO_C1 = 1e-4
M_TOP_PAD = -2  # glibc mallopt parameter


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


@functools.cache
def _keep_freed_heap() -> None:
    """Ask glibc to keep 64 MB of freed heap rather than hand it back to the OS at every free.

    Each Newton iteration allocates and frees block-sized temporaries; by default glibc trims the
    heap after each, so every new temporary page-faults fresh memory, which made the solver ~1.2x
    slower. Process-wide and harmless, so done once per process; without glibc (macOS, musl) it does
    nothing.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_TOP_PAD, 64 << 20)
    except (OSError, AttributeError):
        pass


def _padded_rows(n: np.ndarray) -> np.ndarray:
    """Round row counts up to one of a few sizes (at most ~25% padding), so similar entities share a block."""
    n = np.maximum(n, 1)
    bit_length = np.frexp(n)[1]
    step = np.maximum(4, 1 << np.maximum(0, bit_length - 3))
    return -(-n // step) * step


def solve_entities(problems: list[EntityProblem], settings: SolverSettings,
                   want_hessian: bool = False) -> list[EntitySolution]:
    """Solve every entity; blocks of equal (dimension, padded rows) go through batched Newton."""
    _keep_freed_heap()
    solutions: list[EntitySolution | None] = [None] * len(problems)
    dims = np.fromiter((p.x.shape[1] for p in problems), dtype=np.int64, count=len(problems))
    rows = np.fromiter((len(p.y) for p in problems), dtype=np.int64, count=len(problems))
    # the number of L1 weights per entity, from one concatenation rather than a numpy call per entity
    l1_seen = np.concatenate([[0], np.cumsum(np.concatenate([p.l1 for p in problems] or [np.zeros(0)]) != 0)])
    ends = np.cumsum(dims)
    by_newton = (l1_seen[ends] == l1_seen[ends - dims]) & (dims <= NEWTON_MAX_DIMENSION)
    for position in np.flatnonzero(~by_newton):
        solutions[position] = _solve_one_quasi_newton(problems[position], settings, want_hessian)
    newton = np.flatnonzero(by_newton)
    if not len(newton):
        return solutions  # type: ignore[return-value]
    shapes = np.stack([dims[newton], _padded_rows(rows[newton])], axis=1)
    for d, n in np.unique(shapes, axis=0).tolist():
        positions = newton[(shapes == (d, n)).all(axis=1)]
        block = [problems[i] for i in positions]
        for position, solution in zip(positions, _newton_block(block, d, n, settings, want_hessian), strict=True):
            solutions[position] = solution
    return solutions  # type: ignore[return-value]


@dataclass
class _Block:
    """The stacked data of entities of equal dimension d, padded to n rows (padding rows have weight 0)."""

    x: np.ndarray          # (B, n, d)
    y: np.ndarray          # (B, n)
    w: np.ndarray
    o: np.ndarray
    l2: np.ndarray         # (B, d)
    mean: np.ndarray       # (B, d) prior mean (0 without a prior)
    precision: np.ndarray  # (B, d) prior precision (0 without a prior)

    def take(self, members: np.ndarray) -> _Block:
        return _Block(*(getattr(self, name)[members] for name in self.__dataclass_fields__))

    def objective(self, b: np.ndarray, loss: Loss) -> tuple[np.ndarray, np.ndarray]:
        """Objective and margins of every entity at coefficients ``b``."""
        m = np.matmul(self.x, b[:, :, None])[:, :, 0] + self.o
        delta = b - self.mean
        f = (np.sum(self.w * loss.value(self.y, m), axis=1) + 0.5 * np.sum(self.l2 * b ** 2, axis=1)
             + 0.5 * np.sum(self.precision * delta ** 2, axis=1))
        return f, m

    def gradient_and_hessian(self, b: np.ndarray, m: np.ndarray, loss: Loss,
                             want_hessian: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Gradient, and X^T diag(w l'') X + L2 + prior precision by one batched BLAS call."""
        first, second = loss.derivatives(self.y, m)
        g = np.matmul((self.w * first)[:, None, :], self.x)[:, 0, :] + self.l2 * b + self.precision * (b - self.mean)
        if not want_hessian:
            return g, None
        d = self.x.shape[2]
        hessian = np.matmul((self.x * (self.w * second)[:, :, None]).transpose(0, 2, 1), self.x)
        hessian[:, np.arange(d), np.arange(d)] += self.l2 + self.precision
        return g, hessian


def _stack(block: list[EntityProblem], d: int, n: int) -> tuple[_Block, np.ndarray]:
    """The block's data, and its starting coefficients."""
    size = len(block)
    x = np.zeros((size, n, d))
    y, w, o = np.zeros((size, n)), np.zeros((size, n)), np.zeros((size, n))
    for i, p in enumerate(block):
        rows = len(p.y)
        x[i, :rows], y[i, :rows], w[i, :rows], o[i, :rows] = p.x, p.y, p.w, p.o
    has_prior = any(p.prior_precision is not None for p in block)
    mean = np.stack([p.prior_mean if p.prior_mean is not None else np.zeros(d) for p in block]) if has_prior \
        else np.zeros((size, d))
    precision = np.stack([p.prior_precision if p.prior_precision is not None else np.zeros(d) for p in block]) \
        if has_prior else np.zeros((size, d))
    data = _Block(x, y, w, o, np.array([p.l2 for p in block]).reshape(size, d), mean, precision)
    return data, np.array([p.x0 for p in block], dtype=float).reshape(size, d)


@dataclass
class _State:
    """Where each entity of a working set stands."""

    b: np.ndarray           # (B, d) coefficients
    f: np.ndarray           # (B,) objective
    m: np.ndarray           # (B, n) margins
    iterations: np.ndarray  # (B,)
    moving: np.ndarray      # (B,) not yet converged

    def take(self, members: np.ndarray) -> _State:
        return _State(*(getattr(self, name)[members] for name in self.__dataclass_fields__))

    def accept(self, rows: np.ndarray, b: np.ndarray, f: np.ndarray, m: np.ndarray, ftol: float) -> None:
        """Move ``rows`` to their new point; an entity whose objective barely fell has converged."""
        decrease = self.f[rows] - f
        self.b[rows], self.f[rows], self.m[rows] = b, f, m
        self.iterations[rows] += 1
        self.moving[rows[decrease <= ftol * np.maximum(1.0, np.abs(f))]] = False


def _newton_block(block: list[EntityProblem], d: int, n: int, settings: SolverSettings,
                  want_hessian: bool) -> list[EntitySolution]:
    """Newton with a per-entity Armijo backtracking line search and per-entity convergence.

    The iterations run on a working set of entities that is compacted (copied) whenever fewer than
    half of it still move: the products run over whole arrays instead of gathering the movers at
    every step, and the entities already done cost at most as much as the movers.
    """
    loss = Loss(settings.task)
    data, b = _stack(block, d, n)
    f, m = data.objective(b, loss)
    work, members = data, np.arange(len(block))
    state = _State(b.copy(), f, m, np.zeros(len(block), dtype=int), np.ones(len(block), dtype=bool))
    b_out, f_out, iterations_out = b, f.copy(), state.iterations.copy()

    def write_back() -> None:
        b_out[members], f_out[members], iterations_out[members] = state.b, state.f, state.iterations

    for _ in range(settings.max_iterations + 1):
        if 2 * np.count_nonzero(state.moving) < len(members):
            write_back()
            keep = np.flatnonzero(state.moving)
            members, work, state = members[keep], work.take(keep), state.take(keep)
        g, hessian = work.gradient_and_hessian(state.b, state.m, loss)
        assert hessian is not None
        scale = np.maximum(1.0, np.max(np.abs(state.b), axis=1)) if d else 1.0
        gnorm = np.max(np.abs(g), axis=1) if d else np.zeros(len(members))
        state.moving &= (gnorm > settings.gtol * scale) & (state.iterations < settings.max_iterations)
        if not state.moving.any():
            break
        # a tiny ridge keeps an unregularized, not-yet-identified direction solvable
        step = np.linalg.solve(hessian + 1e-12 * np.eye(d), g[..., None])[..., 0]
        slope = np.einsum("bd,bd->b", g, step)
        # a Newton decrement at rounding level: nothing left to gain
        state.moving &= slope > settings.ftol * np.maximum(1.0, np.abs(state.f))
        step[~state.moving] = 0.0
        _line_search(work, state, step, slope, settings.ftol, loss)
    write_back()
    m_out = np.matmul(data.x, b_out[:, :, None])[:, :, 0] + data.o
    g, hessian = data.gradient_and_hessian(b_out, m_out, loss, want_hessian)
    converged = (np.max(np.abs(g), axis=1) if d else np.zeros(len(block))) <= np.maximum(1e-6, 1e-6 * np.abs(f_out))
    return [EntitySolution(p.entity_id, b_out[i], float(f_out[i]), int(iterations_out[i]), bool(converged[i]),
                           hessian[i] if hessian is not None else None)
            for i, p in enumerate(block)]


def _line_search(work: _Block, state: _State, step: np.ndarray, slope: np.ndarray, ftol: float,
                 loss: Loss) -> None:
    """Backtrack ``b - t * step`` until Armijo holds, for each moving entity of ``state``.

    The full step is tried on the whole working set (no gather; the others have a zero step); the
    few entities that need a shorter step are then gathered and halved until they pass.
    """
    trial = state.b - step
    f_trial, m_trial = work.objective(trial, loss)
    ok = state.moving & (f_trial <= state.f - ARMIJO_C1 * slope)
    state.accept(np.flatnonzero(ok), trial[ok], f_trial[ok], m_trial[ok], ftol)
    rows = np.flatnonzero(state.moving & ~ok)
    rest = work.take(rows)
    t = 0.5
    while len(rows) and t > 1e-10:
        trial = state.b[rows] - t * step[rows]
        f_trial, m_trial = rest.objective(trial, loss)
        ok = f_trial <= state.f[rows] - ARMIJO_C1 * t * slope[rows]
        state.accept(rows[ok], trial[ok], f_trial[ok], m_trial[ok], ftol)
        rows, rest = rows[~ok], rest.take(np.flatnonzero(~ok))
        t *= 0.5
    state.moving[rows] = False  # no decrease possible: at the optimum to machine precision


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
