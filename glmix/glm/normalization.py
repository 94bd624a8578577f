"""Feature normalization as Photon ML offers it, done as a change of variables of the objective.

Photon ML scales each feature by a factor ``f`` (and, for standardization, shifts it by ``s``):
``x' = (x - s) * f``. A GLM on the normalized features with coefficients ``z`` has the margin
``z0 + sum_j z_j (x_j - s_j) f_j``, the margin of the original features with

    b_j = f_j z_j                       (j not the intercept)
    b_0 = z_0 - sum_j f_j s_j z_j       (the intercept absorbs the shifts)

so the solver can work in the normalized space (its variable is ``z``; L1 and L2 apply to ``z``)
while the data stay as they are: the loss and its gradient are computed at ``b = T z`` on the
original rows, and the gradient is carried back with ``T^T``. The model is saved as ``b``, in
the original space, so scoring never needs the factors. Standardization needs the intercept (it
takes up the shifts); the intercept itself is neither scaled nor shifted. A feature with no spread
(standard deviation or largest magnitude 0) keeps the factor 1. Written by hand: no library
reparametrizes a distributed GLM objective; the factors come from the index's FeatureSummary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glmix.settings import NormalizationKind


@dataclass(frozen=True)
class Normalization:
    """The change of variables ``b = T z`` of one shard (``intercept``: the intercept's index or None)."""

    factors: np.ndarray
    shifts: np.ndarray
    intercept: int | None

    @classmethod
    def identity(cls, size: int, intercept: int | None) -> Normalization:
        return cls(np.ones(size), np.zeros(size), intercept)

    @classmethod
    def from_statistics(cls, kind: NormalizationKind, mean: np.ndarray, variance: np.ndarray, low: np.ndarray,
                        high: np.ndarray, intercept: int | None) -> Normalization:
        """``kind``'s factors and shifts from each feature's mean, variance, min and max over the rows."""
        size = len(mean)
        if kind == "none":
            return cls.identity(size, intercept)
        if kind == "standardization" and intercept is None:
            raise ValueError("normalization 'standardization' needs the shard's intercept, which takes up the shifts")
        spread = np.maximum(np.abs(low), np.abs(high)) if kind == "scale_with_max_magnitude" else \
            np.sqrt(np.maximum(variance, 0.0))
        factors = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 1.0)
        shifts = np.asarray(mean, dtype=float).copy() if kind == "standardization" else np.zeros(size)
        if intercept is not None:
            factors[intercept], shifts[intercept] = 1.0, 0.0
        return cls(factors, shifts, intercept)

    @property
    def is_identity(self) -> bool:
        return bool(np.all(self.factors == 1.0) and np.all(self.shifts == 0.0))

    def to_original(self, z: np.ndarray) -> np.ndarray:
        b = self.factors * z
        if self.intercept is not None:
            b[self.intercept] = z[self.intercept] - float(np.sum(self.factors * self.shifts * z))
        return b

    def to_normalized(self, b: np.ndarray) -> np.ndarray:
        """The inverse: ``z_j = b_j / f_j``, ``z_0 = b_0 + sum_j s_j b_j``."""
        z = b / self.factors
        if self.intercept is not None:
            z[self.intercept] = b[self.intercept] + float(np.sum(self.shifts * b))
        return z

    def gradient_to_normalized(self, g: np.ndarray) -> np.ndarray:
        """``T^T g``: a gradient with respect to ``b`` as one with respect to ``z``."""
        out = self.factors * g
        if self.intercept is not None:
            out = out - self.factors * self.shifts * g[self.intercept]
            out[self.intercept] = g[self.intercept]
        return out

    def matrix(self) -> np.ndarray:
        """``T`` as a dense matrix (for the full covariance, small dimensions only)."""
        t = np.diag(self.factors)
        if self.intercept is not None:
            t[self.intercept, :] = -self.factors * self.shifts
            t[self.intercept, self.intercept] = 1.0
        return t
