"""What a trainer takes from a previous model: a warm start, an incremental prior, and the
coefficient variances it publishes. The fixed-effect trainer and the per-entity solver share these,
so both read a previous model the same way (by feature name and term, never by index).

A scheduled retraining starts from the registry's production version: the flow's ``production``
stage writes a pointer to it when the run starts (glmix.registry.gate), and a trainer given that
pointer takes its coordinate's model from it, if the run has a production version holding that
coordinate — the first run of a model trains from scratch with the same command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from glmix.io.storage import join, storage_for
from glmix.model.game_model import KIND_DIR
from glmix.settings import Settings

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


def production_coordinate(pointer: str, coordinate: str) -> str | None:
    """The Model Avro directory of ``coordinate`` in the production model ``pointer`` names (None: no
    production version yet, or it has no such coordinate)."""
    named = json.loads(storage_for(pointer).read_bytes(pointer))
    if named["version"] is None:
        return None
    for kind in dict.fromkeys(KIND_DIR.values()):
        directory = join(named["model"], kind, coordinate, "coefficients")
        if storage_for(directory).exists(directory):
            return directory
    return None


class PreviousModels(Settings):
    """The previous models a trainer may start from or be pulled towards (both trainers' settings)."""

    warm_start: str | None = Field(None, description="a model to start from (the previous pass's)")
    prior: str | None = Field(None, description="incremental training: the Gaussian prior's model (with variances)")
    incremental_weight: float = Field(1.0, gt=0)
    production: str | None = Field(None, description="a production pointer (OUTPUT/production.json), whose "
                                   "version's model of this coordinate may fill in for the two below")
    production_warm_start: bool = Field(False, description="the production model is the warm start when none is given")
    production_prior: bool = Field(False, description="the production model is the prior when none is given")

    def previous(self, coordinate: str) -> tuple[str | None, str | None]:
        """The warm start and the prior, with the production version's model filling in."""
        production = None
        if self.production and (self.production_warm_start or self.production_prior):
            production = production_coordinate(self.production, coordinate)
        return (self.warm_start or (production if self.production_warm_start else None),
                self.prior or (production if self.production_prior else None))
