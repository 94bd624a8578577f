"""A tight scipy reference for the GLM objective, used by the fixed- and random-effect tests."""

from __future__ import annotations

import numpy as np
import scipy.optimize as so
import scipy.sparse as sp

from glmix.glm.losses import Loss


def reference_objective(x: sp.csr_matrix, y: np.ndarray, w: np.ndarray, o: np.ndarray, task: str,
                        l2: np.ndarray, l1: np.ndarray) -> float:
    """min_b sum w loss(y, xb + o) + l2/2 b^2 + l1 |b| by L-BFGS-B (L1 by splitting b = p - q, p, q >= 0)."""
    loss = Loss(task)
    n = x.shape[1]

    def smooth(b: np.ndarray) -> tuple[float, np.ndarray]:
        m = x @ b + o
        return (float(w @ loss.value(y, m) + 0.5 * np.sum(l2 * b * b)),
                x.T @ (w * loss.derivative(y, m)) + l2 * b)

    def split(z: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = smooth(z[:n] - z[n:])
        return f + float(l1 @ (z[:n] + z[n:])), np.concatenate([g + l1, -g + l1])

    use_split = bool(np.any(l1 > 0))
    fun, z = (split, np.zeros(2 * n)) if use_split else (smooth, np.zeros(n))
    bounds = [(0, None)] * (2 * n) if use_split else None
    best = np.inf
    for _ in range(50):  # L-BFGS-B can stall on the split problem; restarting from its point un-sticks it
        result = so.minimize(fun, z, jac=True, method="L-BFGS-B", bounds=bounds,
                             options={"maxiter": 50_000, "ftol": 1e-15, "gtol": 1e-11, "maxcor": 30})
        z = result.x
        if best - result.fun <= 1e-15 * abs(result.fun):
            break
        best = result.fun
    return float(min(best, result.fun))
