"""A random effect's prior variances learned from the data (``l2: auto``): empirical Bayes.

A random effect's per-entity coefficients are draws from its prior, N(0, s2) — one s2 for the
entities' intercepts, one for their slopes — and the L2 weight a grid searches for is 1 / s2.
Mixed-model tools (lme4, MixedModels.jl) estimate s2 by maximizing the marginal likelihood of the
data instead. With each entity's posterior approximated by a Gaussian N(mu_e, S_e) at its optimum
(the Laplace approximation: S_e the inverse Hessian of the entity's objective; exact for a linear
task), the evidence is stationary in s2 where

    N s2 = sum over the N coefficients of that kind of (mu_ej^2 + S_e,jj) + T,

T being the Laplace term: how each entity's curvature at its optimum moves with s2 (through the
loss's third derivative; 0 for a linear task; glmix.train.random_effect.posteriors computes it).
Without T this is the EM algorithm's fixed point (Dempster, Laird & Rubin 1977), whose steps
shrink with the share of the variance the data leave unexplained, so with entities of a few rows
it needs tens of passes. MacKay's form (MacKay 1992, "Bayesian interpolation"; Tipping 2001,
"Sparse Bayesian learning", eq. 16) has the same fixed point and gets there in a handful:
s2 <- (sum mu^2 + T) / gamma, where gamma = N - sum S_jj / s2 counts the coefficients the data
determine. It is used here (EM's step where gamma is not positive), with secant steps on log s2.

A linear task's objective, sum w (y - m)^2 / 2 + l2 / 2 |b|^2, fixes the noise variance at 1, so
there the learned variance is relative to the residuals' variance, estimated alongside as
sum w r^2 / (rows - gamma_all) (gamma_all: all coefficients the data determine), which divides the
squared means in the update (MacKay's update for the ratio of the two precisions).

Every update re-solves all entities under the new weights (one pass over them), so a random effect
with ``l2: auto`` costs a few solves in one run, against one run per grid point. Coefficients an
entity never saw (features outside its own projection) have posterior equal to prior: each adds s2
to both sides, so leaving them out does not move the fixed point. Written here because no library
fits a prior to the per-entity posteriors of a solver that runs inside Spark tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from glmix.settings import Settings

PriorKind = Literal["intercept", "slopes"]
PRIOR_KINDS: tuple[PriorKind, ...] = ("intercept", "slopes")
MIN_PRIOR_VARIANCE, MAX_PRIOR_VARIANCE = 1e-8, 1e8
MAX_LOG_STEP = 2.0   # a secant step moves a variance by at most a factor e^2


class PriorSearch(Settings):
    """How long ``l2: auto`` searches (both trainers' settings)."""

    prior_iterations: int = Field(30, ge=1, description="with l2: auto: at most this many solves to learn the prior")
    prior_tolerance: float = Field(1e-3, gt=0, description="with l2: auto: learned when no variance would move by "
                                                           "more than this (relative)")


@dataclass(frozen=True)
class Moments:
    """Sums over the entities' coefficients of one kind: how many, their squared posterior means,
    their posterior variances."""

    count: int = 0
    squared_means: float = 0.0
    variances: float = 0.0
    curvature: float = 0.0   # the Laplace term: how the posteriors' curvature moves with the variance

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.count + other.count, self.squared_means + other.squared_means,
                       self.variances + other.variances, self.curvature + other.curvature)

    @classmethod
    def of(cls, means: np.ndarray, variances: np.ndarray, curvature: float = 0.0) -> Moments:
        return cls(len(means), float(np.sum(means ** 2)), float(np.sum(variances)), curvature)


@dataclass(frozen=True)
class Residuals:
    """Sums over every entity's rows and coefficients from which a linear task's noise variance is
    estimated: rows, weighted squared residuals, coefficients the data determine (1 - l2 S_jj each)."""

    rows: int = 0
    squares: float = 0.0
    determined: float = 0.0

    def __add__(self, other: Residuals) -> Residuals:
        return Residuals(self.rows + other.rows, self.squares + other.squares, self.determined + other.determined)

    @property
    def dispersion(self) -> float:
        return self.squares / max(self.rows - self.determined, 1.0)


@dataclass(frozen=True)
class Posteriors:
    """One pass's sums: the moments of each kind of coefficient, and the residuals."""

    moments: dict[PriorKind, Moments]
    residuals: Residuals = Residuals()

    INTEGERS: ClassVar[tuple[str, ...]] = tuple(f"{kind}_count" for kind in PRIOR_KINDS) + ("rows",)

    def __add__(self, other: Posteriors) -> Posteriors:
        return Posteriors({k: self.moments.get(k, Moments()) + other.moments.get(k, Moments())
                           for k in PRIOR_KINDS}, self.residuals + other.residuals)

    @classmethod
    def columns(cls) -> list[str]:
        """The flat names of the sums (a row of a Spark aggregate)."""
        return [f"{kind}_{name}" for kind in PRIOR_KINDS for name in ("count", "squared_means", "variances", "curvature")] + \
            ["rows", "squares", "determined"]

    def to_row(self) -> dict[str, float | int]:
        row: dict[str, float | int] = {f"{kind}_{name}": getattr(self.moments.get(kind, Moments()), name)
                                       for kind in PRIOR_KINDS for name in ("count", "squared_means", "variances", "curvature")}
        return {**row, "rows": self.residuals.rows, "squares": self.residuals.squares,
                "determined": self.residuals.determined}

    @classmethod
    def from_row(cls, row: Mapping[str, float | int | None]) -> Posteriors:
        def value(name: str) -> float:
            return float(row[name] or 0)
        return cls({kind: Moments(int(value(f"{kind}_count")), value(f"{kind}_squared_means"),
                                  value(f"{kind}_variances"), value(f"{kind}_curvature")) for kind in PRIOR_KINDS},
                   Residuals(int(value("rows")), value("squares"), value("determined")))


def evidence_update(moments: Moments, variance: float, dispersion: float = 1.0) -> float:
    """The next prior variance from the posteriors obtained under ``variance`` (MacKay's fixed
    point; EM's step where the data determine none of the coefficients); a linear task's squared
    means are read on the scale of its noise variance, ``dispersion``."""
    if not moments.count:
        return variance
    determined = moments.count - moments.variances / variance
    squares = (moments.squared_means + moments.curvature) / dispersion
    if determined > 0:
        updated = squares / determined
    else:
        updated = (squares + moments.variances) / moments.count
    return min(max(updated, MIN_PRIOR_VARIANCE), MAX_PRIOR_VARIANCE)


@dataclass
class LearnedPrior:
    """Where the search for the prior variances stands: the variances, and each step's (with a
    linear task's noise variance)."""

    variances: dict[PriorKind, float]
    dispersion: float = 1.0          # a linear task's noise variance (the variances are relative to it)
    history: list[dict[str, float]] = field(default_factory=list)
    converged: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"variances": self.variances, "l2": {k: 1.0 / v for k, v in self.variances.items()},
                "dispersion": self.dispersion, "iterations": len(self.history), "converged": self.converged,
                "history": self.history}


def _secant(t: list[float], u: list[float]) -> float:
    """The next log-variance: a secant step towards the root of h(t) = u(t) - t through the last two
    steps, at most MAX_LOG_STEP long (a variance the data do not support falls to its floor in
    steps of that factor instead of the update's shrinking ones); the plain update u where the
    secant is undefined or points away from it (h increasing)."""
    if len(t) < 2 or t[-1] == t[-2]:
        return u[-1]
    r, r_before = u[-1] - t[-1], u[-2] - t[-2]
    slope = (r - r_before) / (t[-1] - t[-2])
    if slope >= 0:
        return u[-1]
    return t[-1] + max(-MAX_LOG_STEP, min(MAX_LOG_STEP, -r / slope))


def learn_prior_variances(start: Mapping[PriorKind, float], posteriors_at: Callable[[dict[PriorKind, float]], Posteriors],
                          linear: bool, max_iterations: int, tolerance: float,
                          on_step: Callable[[int, dict[PriorKind, float]], None] | None = None) -> LearnedPrior:
    """Search the variances where the evidence update leaves them unchanged, from ``start``, until
    the update would move none by more than ``tolerance`` (relative) or ``max_iterations`` solves
    were made. ``posteriors_at(variances)`` solves every entity under those prior variances and sums
    its posteriors. With few rows per entity the update's steps shrink (its slope at the fixed point
    nears 1), so each kind's log-variance takes secant steps on update(t) - t after the first. A
    kind of which the data determine less than one coefficient in all (gamma < 1) has no variance
    to learn: it stays where it is (near 0, the random effect has none of that kind)."""
    learned = LearnedPrior(dict(start))
    t: dict[PriorKind, list[float]] = {k: [] for k in start}
    u: dict[PriorKind, list[float]] = {k: [] for k in start}
    for step in range(max_iterations):
        sums = posteriors_at(dict(learned.variances))
        dispersion = sums.residuals.dispersion if linear else 1.0
        learned.history.append({**{f"{k}_variance": v for k, v in learned.variances.items()},
                                **({"dispersion": dispersion} if linear else {})})
        learned.dispersion = dispersion
        moving = []
        for kind, variance in learned.variances.items():
            moments = sums.moments.get(kind, Moments())
            t[kind].append(math.log(variance))
            u[kind].append(math.log(evidence_update(moments, variance, dispersion)))
            if moments.count - moments.variances / variance >= 1 and abs(u[kind][-1] - t[kind][-1]) >= tolerance:
                moving.append(kind)
        if not moving:
            learned.variances = {k: math.exp(u[k][-1]) for k in t}
            learned.converged = True
            break
        learned.variances = {k: min(max(math.exp(_secant(t[k], u[k]) if k in moving else u[k][-1]),
                                        MIN_PRIOR_VARIANCE), MAX_PRIOR_VARIANCE) for k in t}
        if on_step is not None:
            on_step(step, learned.variances)
    return learned
