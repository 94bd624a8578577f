"""L-BFGS and OWL-QN with a state that can be checkpointed and resumed exactly.

One implementation serves both: with no L1 weight it is L-BFGS (two-loop recursion, backtracking
line search on the Armijo condition); with L1 weights it is OWL-QN (Andrew & Gao, 2007): the
pseudo-gradient replaces the gradient and every trial point is projected onto the orthant of
the current point (for coordinates at zero: the orthant of steepest descent). Unlike the paper we
do not also zero the direction's components that disagree in sign with the pseudo-gradient on
*non-zero* coordinates: the objective is smooth there, and keeping the quasi-Newton component
converged 6x faster on a9a; the projection alone keeps every step a descent step.

The whole optimizer state (point, value, gradient, curvature pairs, counters) is a small
dataclass, so a trainer can save it every k iterations and a restarted run continues *exactly*
where the saved one was: the same final coefficients as an uninterrupted run. Determinism also
makes the distributed fixed effect simple: every worker runs this same code on the same
all-reduced values and so holds the same coefficients.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]

ARMIJO_C1 = 1e-4
MAX_BACKTRACKS = 40


@dataclass
class OptimizerState:
    x: np.ndarray
    f: float                      # smooth part only
    g: np.ndarray                 # gradient of the smooth part
    s: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    iteration: int = 0
    evaluations: int = 1
    history: list[tuple[int, float, float]] = field(default_factory=list)
    radius: float = 0.0           # TRON's trust region (glmix.glm.tron); unused by L-BFGS

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, x=self.x, f=self.f, g=self.g, s=self._matrix(self.s), y=self._matrix(self.y),
                 iteration=self.iteration, radius=self.radius,
                 evaluations=self.evaluations, history=np.array(self.history, dtype=float).reshape(-1, 3))
        return buffer.getvalue()

    def _matrix(self, vectors: list[np.ndarray]) -> np.ndarray:
        return np.array(vectors) if vectors else np.zeros((0, len(self.x)))

    @classmethod
    def from_bytes(cls, data: bytes) -> OptimizerState:
        z = np.load(io.BytesIO(data))
        return cls(x=z["x"], f=float(z["f"]), g=z["g"], s=list(z["s"]), y=list(z["y"]),
                   iteration=int(z["iteration"]), evaluations=int(z["evaluations"]),
                   history=[(int(i), float(f), float(n)) for i, f, n in z["history"]],
                   radius=float(z["radius"]) if "radius" in z else 0.0)


@dataclass
class OptimizeResult:
    x: np.ndarray
    objective: float              # smooth part + L1 term
    gradient_norm: float          # inf-norm of the (pseudo-)gradient
    iterations: int
    evaluations: int
    reason: str                   # why it stopped
    history: list[tuple[int, float, float]]

    @property
    def converged(self) -> bool:
        return self.reason in ("gradient", "function")


def pseudo_gradient(x: np.ndarray, g: np.ndarray, l1: np.ndarray) -> np.ndarray:
    """The minimum-norm subgradient of f + l1|x| (equals g where l1 is 0)."""
    pg = g + l1 * np.sign(x)
    at_zero = x == 0
    right, left = g + l1, g - l1
    pg[at_zero] = np.where(right[at_zero] < 0, right[at_zero], np.where(left[at_zero] > 0, left[at_zero], 0.0))
    return pg


def _direction(pg: np.ndarray, s: list[np.ndarray], y: list[np.ndarray],
               preconditioner: np.ndarray | None = None) -> np.ndarray:
    """-H pg by the two-loop recursion; H0 = gamma * diag(preconditioner) (gamma * I without one)."""
    q = pg.copy()
    alphas = []
    for s_i, y_i in zip(reversed(s), reversed(y), strict=True):
        rho = 1.0 / y_i.dot(s_i)
        alpha = rho * s_i.dot(q)
        q -= alpha * y_i
        alphas.append((rho, alpha))
    if preconditioner is not None:
        q *= preconditioner
        if s:
            q *= s[-1].dot(y[-1]) / y[-1].dot(preconditioner * y[-1])
    elif s:
        q *= s[-1].dot(y[-1]) / y[-1].dot(y[-1])
    for (s_i, y_i), (rho, alpha) in zip(zip(s, y, strict=True), reversed(alphas), strict=True):
        q += (alpha - rho * y_i.dot(q)) * s_i
    return -q


Step = tuple[np.ndarray, float, np.ndarray]   # the new point, its objective and gradient


def _wolfe_step(fun: FunGrad, state: OptimizerState, d: np.ndarray) -> Step | None:
    """A step satisfying the strong Wolfe conditions (scipy's line search; each point evaluated once)."""
    from scipy.optimize import line_search

    seen: dict[bytes, tuple[float, np.ndarray]] = {}

    def evaluate(z: np.ndarray) -> tuple[float, np.ndarray]:
        key = z.tobytes()
        if key not in seen:
            seen[key] = fun(z)
            state.evaluations += 1
        return seen[key]

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when it gives up; we then backtrack instead
        alpha, *_ = line_search(lambda z: evaluate(z)[0], lambda z: evaluate(z)[1], state.x, d, state.g, state.f,
                                c1=ARMIJO_C1, c2=0.9, maxiter=30)
    if alpha is None:
        return None
    x_new = state.x + alpha * d
    f_new, g_new = evaluate(x_new)
    return x_new, float(f_new), np.asarray(g_new, dtype=float)


def _backtracking_step(fun: FunGrad, state: OptimizerState, d: np.ndarray, pg: np.ndarray, l1: np.ndarray,
                       orthant: np.ndarray | None, objective: float) -> Step | None:
    """Halve the step until the Armijo condition holds (trial points projected onto the orthant for OWL-QN)."""
    step = 1.0
    for _ in range(MAX_BACKTRACKS):
        x_new = state.x + step * d
        if orthant is not None:
            x_new[np.sign(x_new) != orthant] = 0.0
        f_new, g_new = fun(x_new)
        state.evaluations += 1
        if float(f_new) + float(np.sum(l1 * np.abs(x_new))) <= objective + ARMIJO_C1 * pg.dot(x_new - state.x):
            return x_new, float(f_new), np.asarray(g_new, dtype=float)
        step *= 0.5
    return None


def minimize(fun: FunGrad, x0: np.ndarray, l1: np.ndarray | float = 0.0, memory: int = 10, max_iter: int = 500,
             ftol: float = 1e-12, gtol: float = 1e-9, state: OptimizerState | None = None,
             callback: Callable[[OptimizerState], None] | None = None,
             preconditioner: np.ndarray | None = None) -> OptimizeResult:
    """Minimize fun(x) + sum(l1 * |x|); fun returns (value, gradient) of the smooth part.

    ``preconditioner``: a positive diagonal approximating the inverse Hessian (e.g. 1 / diag(H) at
    the start). It shapes the initial inverse-Hessian guess of every two-loop recursion, which for
    badly scaled features (column norms spread over orders of magnitude) cuts the iterations
    several-fold, as standardizing features does for Spark MLlib; the objective, the iterates'
    meaning and the stopping rules are unchanged.

    Stops when the (pseudo-)gradient's inf-norm is <= gtol * max(1, |x|_inf) ("gradient"), when an
    iteration lowers the objective by a relative ftol or less ("function"), at max_iter
    ("max_iterations"), or when the line search finds no decrease ("line_search").
    """
    l1 = np.broadcast_to(np.asarray(l1, dtype=float), np.shape(x0)).copy()
    use_l1 = bool(np.any(l1 > 0))
    if state is None:
        x = np.array(x0, dtype=float)
        f, g = fun(x)
        state = OptimizerState(x=x, f=float(f), g=np.asarray(g, dtype=float))
    objective = state.f + float(np.sum(l1 * np.abs(state.x)))
    reason = "max_iterations"
    while True:
        pg = pseudo_gradient(state.x, state.g, l1) if use_l1 else state.g
        gnorm = float(np.max(np.abs(pg))) if pg.size else 0.0
        if not state.history or state.history[-1][0] != state.iteration:
            state.history.append((state.iteration, objective, gnorm))
        if gnorm <= gtol * max(1.0, float(np.max(np.abs(state.x))) if state.x.size else 1.0):
            reason = "gradient"
            break
        if state.iteration >= max_iter:
            break
        d = _direction(pg, state.s, state.y, preconditioner)
        if use_l1:
            orthant = np.where(state.x != 0, np.sign(state.x), -np.sign(pg))
        if pg.dot(d) >= 0:  # not a descent direction: restart from steepest descent
            state.s.clear()
            state.y.clear()
            d = -pg if preconditioner is None else -preconditioner * pg
        if not state.s and preconditioner is None:
            d = d * min(1.0, 1.0 / max(gnorm, 1e-12))  # first step: unit length at most
        found = None if use_l1 else _wolfe_step(fun, state, d)
        if found is None:
            found = _backtracking_step(fun, state, d, pg, l1, orthant if use_l1 else None, objective)
        if found is None:
            reason = "line_search"
            break
        x_new, f_new, g_new = found
        objective_new = float(f_new) + float(np.sum(l1 * np.abs(x_new)))
        s_vec, y_vec = x_new - state.x, np.asarray(g_new, dtype=float) - state.g
        if s_vec.dot(y_vec) > 1e-12 * max(1.0, y_vec.dot(y_vec)):
            state.s.append(s_vec)
            state.y.append(y_vec)
            if len(state.s) > memory:
                state.s.pop(0)
                state.y.pop(0)
        decrease = objective - objective_new
        state.x, state.f, state.g = x_new, float(f_new), np.asarray(g_new, dtype=float)
        state.iteration += 1
        objective = objective_new
        if callback is not None:
            callback(state)
        if decrease <= ftol * max(abs(objective), 1.0):
            pg = pseudo_gradient(state.x, state.g, l1) if use_l1 else state.g
            state.history.append((state.iteration, objective, float(np.max(np.abs(pg))) if pg.size else 0.0))
            reason = "function"
            break
    final_pg = pseudo_gradient(state.x, state.g, l1) if use_l1 else state.g
    return OptimizeResult(x=state.x, objective=objective,
                          gradient_norm=float(np.max(np.abs(final_pg))) if final_pg.size else 0.0,
                          iterations=state.iteration, evaluations=state.evaluations, reason=reason,
                          history=list(state.history))
