"""Search where nothing can be learned: a budget of runs spread over ranges of penalties.

A fixed effect's L1 weight or an elastic-net mix has no evidence to maximize as ``l2: auto`` does,
so a config's ``search:`` section names ranges (``global.l1: {low: 1e-4, high: 10}``) and a number
of trials; the flow runs the trials as it runs a grid's points (one coordinate-descent run each,
the best on the first evaluator wins). The points are drawn when the flow is built — Azkaban runs a
fixed graph — by scipy's quasi-Monte Carlo engines (``scipy.stats.qmc``): a scrambled Sobol or
Halton sequence or a Latin hypercube covers the ranges more evenly than independent draws
(``random``), which matters with a budget of a few runs. Ranges are on a log scale unless
``log: false``; values are rounded to 4 significant digits, so the commands stay readable.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.stats import qmc

from glmix.settings import Settings

SEARCHABLE = ("l1", "l2")
SIGNIFICANT_DIGITS = 4


class SearchRange(Settings):
    low: float = Field(ge=0)
    high: float = Field(gt=0)
    log: bool = Field(True, description="spread on a log scale (weights span decades)")

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if self.high <= self.low:
            raise ValueError("high must be above low")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0 (or log: false)")
        return self

    def value(self, u: float) -> float:
        """The point at ``u`` in [0, 1) of the range."""
        if self.log:
            x = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


class SearchSettings(Settings):
    """``search:``: ``trials`` runs over the ranges of ``space`` (keys ``COORDINATE.l1`` or
    ``COORDINATE.l2``), drawn by ``method`` from ``seed``."""

    trials: int = Field(ge=1, le=1000, description="the budget: how many coordinate-descent runs")
    method: Literal["sobol", "halton", "latin-hypercube", "random"] = "sobol"
    seed: int = 0
    space: dict[str, SearchRange] = Field(min_length=1)

    @model_validator(mode="after")
    def _keys(self) -> SearchSettings:
        for key in self.space:
            coordinate, _, weight = key.rpartition(".")
            if not coordinate or weight not in SEARCHABLE:
                raise ValueError(f"space.{key}: keys are COORDINATE.l1 or COORDINATE.l2")
        return self

    def points(self) -> list[dict[str, float]]:
        """Each trial's values, by key."""
        keys = list(self.space)
        return [{key: self.space[key].value(float(u)) for key, u in zip(keys, row, strict=True)}
                for row in self._unit_points(len(keys))]

    def _unit_points(self, dimension: int) -> np.ndarray:
        if self.method == "random":
            return np.random.default_rng(self.seed).random((self.trials, dimension))
        engine: qmc.QMCEngine = {"sobol": qmc.Sobol, "halton": qmc.Halton, "latin-hypercube": qmc.LatinHypercube}[
            self.method](d=dimension, seed=self.seed)
        with warnings.catch_warnings():   # Sobol prefers powers of 2; any budget is the user's to choose
            warnings.simplefilter("ignore", UserWarning)
            points: np.ndarray = engine.random(self.trials)
        return points
