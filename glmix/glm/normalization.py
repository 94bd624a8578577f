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

A random effect's entities are small and dense, so there the rows themselves are normalized
(``normalize_rows``) under each entity's own projection of the shard's change of variables
(``project``); the same statistics as a fixed effect's, over all the shard's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glmix.data.feature_index import FeatureIndex, feature_statistics
from glmix.errors import GlmixError
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

    def project(self, features: np.ndarray) -> Normalization:
        """The change of variables of the coefficients at ``features`` (an entity's projection, by
        index). An entity without the intercept column cannot absorb shifts: it is only scaled."""
        at = np.flatnonzero(features == self.intercept) if self.intercept is not None else np.zeros(0, dtype=int)
        intercept = int(at[0]) if len(at) else None
        shifts = self.shifts[features] if intercept is not None else np.zeros(len(features))
        return Normalization(self.factors[features], shifts, intercept)

    def normalize_rows(self, x: np.ndarray) -> np.ndarray:
        """Dense rows in the normalized space: ``(x - s) * f`` (the intercept column stays 1)."""
        return (x - self.shifts) * self.factors

    def variances_to_original(self, covariance: np.ndarray) -> np.ndarray:
        """The original coefficients' variances from ``z``'s covariance: diag(T C T^T)."""
        t = self.matrix()
        variances: np.ndarray = np.einsum("ij,jk,ik->i", t, covariance, t)
        return variances


def shard_normalization(index_dir: str, index: FeatureIndex) -> Normalization:
    """The change of variables of an indexed shard (its ``normalization``), from the index's statistics."""
    shard = index.shard
    intercept = 0 if shard.intercept else None
    if shard.normalization == "none":
        return Normalization.identity(index.size, intercept)
    stats = feature_statistics(index_dir, index)
    try:
        return Normalization.from_statistics(shard.normalization, stats["mean"], stats["variance"], stats["min"],
                                             stats["max"], intercept)
    except ValueError as exc:
        raise GlmixError(f"feature shard {shard.name}: {exc}") from None
