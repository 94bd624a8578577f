"""TRON: a trust-region Newton method whose steps come from conjugate gradients on Hessian-vector
products (Lin, Weng & Keerthi 2008, "Trust region Newton method for large-scale logistic
regression"; the solver of LIBLINEAR and Photon ML's TRON).

Each iteration solves H s = -g approximately by CG inside the trust region |s| <= radius (stopping
at a relative residual of 0.1, or on the boundary), accepts the step if the objective fell by a
fair share of what the quadratic model predicted, and resizes the region by LIBLINEAR's rules. A
Hessian-vector product is one pass over the rows, so a step costs a few passes where L-BFGS takes
one per line-search trial; it wins where the Hessian is badly conditioned.

The state is glmix.glm.optim's ``OptimizerState`` (point, value, gradient, radius, counters), so a
trainer checkpoints and resumes TRON exactly as it does L-BFGS, and every worker of a distributed
fixed effect runs this same deterministic code on the same all-reduced values. Written by hand:
scipy's ``trust-ncg`` keeps its state internal (no exact resume) and has no distributed products.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glmix.glm.optim import FunGrad, OptimizeResult, OptimizerState

HessianTimes = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (x, v) -> H(x) v

ETA0, ETA1, ETA2 = 1e-4, 0.25, 0.75          # acceptance and resizing thresholds (LIBLINEAR's)
SIGMA1, SIGMA2, SIGMA3 = 0.25, 0.5, 4.0       # shrink and grow factors
CG_TOLERANCE = 0.1                           # relative residual at which CG stops


def _conjugate_gradient(hessian_times: HessianTimes, x: np.ndarray, g: np.ndarray,
                        radius: float) -> tuple[np.ndarray, np.ndarray, int]:
    """An approximate solution s of H(x) s = -g with |s| <= radius, its residual r = -g - H s, and
    the number of Hessian-vector products it took."""
    s, r = np.zeros_like(g), -g.copy()
    d, rr = r.copy(), float(r @ r)
    tolerance = CG_TOLERANCE * float(np.linalg.norm(g))
    products = 0
    while np.sqrt(rr) > tolerance:
        hd = hessian_times(x, d)
        products += 1
        curvature = float(d @ hd)
        alpha = rr / curvature if curvature > 0 else np.inf
        if not np.isfinite(alpha) or np.linalg.norm(s + alpha * d) > radius:
            # to the boundary: the tau >= 0 with |s + tau d| = radius
            sd, dd, ss = float(s @ d), float(d @ d), float(s @ s)
            tau = (-sd + np.sqrt(sd * sd + dd * (radius * radius - ss))) / dd
            return s + tau * d, r - tau * hd, products
        s = s + alpha * d
        r = r - alpha * hd
        rr_new = float(r @ r)
        d = r + (rr_new / rr) * d
        rr = rr_new
    return s, r, products


def _resized(radius: float, step: float, actual: float, predicted: float, gs: float) -> float:
    """The trust region after a step of length ``step``: shrunk when the objective fell by less than
    the model predicted, grown when it fell by more (LIBLINEAR's rules; ``gs`` = g . s)."""
    excess = -actual - gs             # f_new - f - g.s: the step's curvature as the objective saw it
    alpha = SIGMA3 if excess <= 0 else max(SIGMA1, -0.5 * gs / excess)
    if actual < ETA0 * predicted:
        return min(max(alpha, SIGMA1) * step, SIGMA2 * radius)
    if actual < ETA1 * predicted:
        return max(SIGMA1 * radius, min(alpha * step, SIGMA2 * radius))
    if actual < ETA2 * predicted:
        return max(SIGMA1 * radius, min(alpha * step, SIGMA3 * radius))
    return max(radius, min(alpha * step, SIGMA3 * radius))


def tron(fun: FunGrad, hessian_times: HessianTimes, x0: np.ndarray, max_iter: int = 500, ftol: float = 1e-12,
         gtol: float = 1e-9, state: OptimizerState | None = None,
         callback: Callable[[OptimizerState], None] | None = None) -> OptimizeResult:
    """Minimize a smooth, twice-differentiable fun (value and gradient) with TRON. The stopping
    rules are glmix.glm.optim.minimize's ("gradient", "function" — also when the quadratic model
    predicts no more than that decrease —, "max_iterations"), plus "trust_region" when the region
    shrank to nothing without a decrease."""
    if state is None:
        x = np.array(x0, dtype=float)
        f, g = fun(x)
        state = OptimizerState(x=x, f=float(f), g=np.asarray(g, dtype=float))
    if state.radius <= 0:
        state.radius = float(np.linalg.norm(state.g))
    reason = "max_iterations"
    while True:
        gnorm = float(np.max(np.abs(state.g))) if state.g.size else 0.0
        if not state.history or state.history[-1][0] != state.iteration:
            state.history.append((state.iteration, state.f, gnorm))
        if gnorm <= gtol * max(1.0, float(np.max(np.abs(state.x))) if state.x.size else 1.0):
            reason = "gradient"
            break
        if state.iteration >= max_iter:
            break
        x = state.x
        s, r, products = _conjugate_gradient(hessian_times, x, state.g, state.radius)
        state.evaluations += products
        gs = float(state.g @ s)
        predicted = -0.5 * (gs - float(s @ r))
        if predicted <= ftol * max(abs(state.f), 1.0):      # the model has nothing left to gain
            reason = "function"
            break
        f_new, g_new = fun(x + s)
        state.evaluations += 1
        actual = state.f - float(f_new)
        step = float(np.linalg.norm(s))
        if state.iteration == 0:        # before the first accepted step: the region fits the step
            state.radius = min(state.radius, step)
        state.radius = _resized(state.radius, step, actual, predicted, gs)
        if actual > ETA0 * predicted:
            state.x, state.f, state.g = x + s, float(f_new), np.asarray(g_new, dtype=float)
            state.iteration += 1
            if callback is not None:
                callback(state)
            if actual <= ftol * max(abs(state.f), 1.0):
                state.history.append((state.iteration, state.f, float(np.max(np.abs(state.g)))))
                reason = "function"
                break
        elif state.radius <= 1e-12 * max(1.0, float(np.linalg.norm(state.x))):
            reason = "trust_region"
            break
    return OptimizeResult(x=state.x, objective=state.f,
                          gradient_norm=float(np.max(np.abs(state.g))) if state.g.size else 0.0,
                          iterations=state.iteration, evaluations=state.evaluations, reason=reason,
                          history=list(state.history))
