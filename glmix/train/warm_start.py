"""What a trainer takes from a previous model: a warm start, an incremental prior, and the
coefficient variances it publishes. The fixed-effect trainer and the per-entity solver share these,
so both read a previous model the same way (by feature name and term, never by index)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

FeatureKey = tuple[str, str]
VarianceKind = Literal["none", "simple", "full"]
MIN_VARIANCE = 1e-12  # a prior variance is floored here, so its precision stays finite


def coefficients_at(means: Mapping[FeatureKey, float], keys: Sequence[FeatureKey]) -> np.ndarray:
    """A previous model's coefficients at ``keys``' positions; 0 where it has none (warm start)."""
    return np.array([means.get(key, 0.0) for key in keys], dtype=np.float64)


def prior_at(means: Mapping[FeatureKey, float], variances: Mapping[FeatureKey, float],
             keys: Sequence[FeatureKey], weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian prior of incremental training at ``keys``' positions: means and precisions
    ``weight / variance`` (Photon ML's incremental weight); precision 0 where the previous model
    has no coefficient or no variance for a feature, so the prior leaves it free."""
    mean, precision = np.zeros(len(keys)), np.zeros(len(keys))
    for j, key in enumerate(keys):
        if key in means and key in variances:
            mean[j] = means[key]
            precision[j] = weight / max(variances[key], MIN_VARIANCE)
    return mean, precision


def variances_from_diagonal(diagonal: np.ndarray) -> np.ndarray:
    """SIMPLE variances: 1 / diag(H), the Hessian including its penalty."""
    return 1.0 / np.maximum(diagonal, MIN_VARIANCE)


def variances_from_hessian(hessian: np.ndarray, kind: VarianceKind) -> np.ndarray:
    """SIMPLE (1 / diag(H)) or FULL (diag(H^-1), a pseudo-inverse for singular H) variances."""
    if kind == "simple":
        return variances_from_diagonal(np.diag(hessian))
    return np.diag(np.linalg.pinv(hessian)).copy()
