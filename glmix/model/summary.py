"""A GAME model's summary, as lme4's ``summary()`` gives a mixed model's: the fixed effects'
coefficient tables (estimate, standard error, z, p-value, 95% interval) and each random effect's
variance components, entities and rows — read from a published model directory, so it works on any
model glmix (or the flow's ``best/``) published.

Standard errors are the square roots of the variances the trainer published (``variance: full``:
the diagonal of the inverse Hessian of the objective at the optimum; ``simple``: 1 / its diagonal,
a lower bound that ignores correlations), times the dispersion for a linear task (Pearson's
estimate, as statsmodels' GLM). Without L2 they are the maximum-likelihood standard errors; with
L2 they are the posterior standard deviations under the Gaussian prior N(0, 1/l2) that L2 is
(the Laplace approximation), and z and p read the estimate against that posterior. A random
effect's variance components are its prior's (1 / l2 for slopes, 1 / intercept_l2 for the
intercept, or the variances learned with ``l2: auto``) beside the spread of its entities'
estimates, which the prior shrinks.
"""

from __future__ import annotations

import html
import json
import math
from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from glmix.io.avro import read_avro_records
from glmix.io.schemas import INTERCEPT_NAME
from glmix.io.storage import join, storage_for
from glmix.model.game_model import TRAINING_REPORT, CoordinateModel, read_game_model

Z_95 = float(norm.ppf(0.975))


@dataclass
class Coefficient:
    feature: str                  # name, or "name term" when it has a term
    estimate: float
    std_error: float | None       # None: the model was trained without variances
    z: float | None
    p_value: float | None
    low: float | None             # the 95% interval
    high: float | None


@dataclass
class Histogram:
    """How a coordinate's estimates are spread: ``counts[i]`` of them lie in [edges[i], edges[i + 1])."""

    edges: list[float]
    counts: list[int]

    @classmethod
    def of(cls, values: np.ndarray, bins: int = 50) -> Histogram:
        counts, edges = np.histogram(values, bins=bins)
        return cls(edges.tolist(), counts.tolist())


@dataclass
class FixedEffectSummary:
    name: str
    rows: int | None
    l2: float | None
    variance: str                 # none | simple | full
    dispersion: float
    coefficients: list[Coefficient]

    @property
    def histogram(self) -> Histogram:
        """Of the estimates (a random effect's is counted while its entities are read: it keeps no table)."""
        return Histogram.of(np.array([c.estimate for c in self.coefficients]))

    @property
    def order(self) -> str:
        """How ``largest_effects`` ranks this table's coefficients after the intercept."""
        return "|estimate|" if self.variance == "none" else "|z|"


@dataclass
class Spread:
    """The entities' estimates of one kind of coefficient: how many, their variance, and their
    mean posterior standard deviation (None without variances)."""

    values: int
    variance: float
    mean_posterior_sd: float | None


@dataclass
class RandomEffectSummary:
    name: str
    entity_field: str | None
    entities: int
    rows: int | None
    prior_variance: dict[str, float | None]          # intercept, slopes (None: not regularized)
    histogram: Histogram                             # of every entity's estimates (intercepts and slopes)
    estimates: dict[str, Spread] = field(default_factory=dict)
    prior_learned: list[str] = field(default_factory=list)   # the kinds learned from the data (l2: auto)

    def prior_shown(self, kind: str) -> str:
        """A kind's prior variance as the CLI and the report show it, marked when learned."""
        return shown(self.prior_variance.get(kind), ".3g") + (" (learned)" if kind in self.prior_learned else "")


@dataclass
class ModelSummary:
    model: str
    task: str
    fixed_effects: list[FixedEffectSummary]
    random_effects: list[RandomEffectSummary]

    def to_json(self) -> str:
        """Every table as JSON, on one line: a fixed effect may have 100k coefficients, which
        ``dataclasses.asdict`` and the indenting encoder (Python's, not C's) take seconds over."""
        return json.dumps({
            "model": self.model, "task": self.task,
            "fixed_effects": [{**vars(f), "coefficients": [vars(c) for c in f.coefficients],
                               "histogram": vars(f.histogram)} for f in self.fixed_effects],
            "random_effects": [{**vars(r), "estimates": {kind: vars(s) for kind, s in r.estimates.items()},
                                "histogram": vars(r.histogram)} for r in self.random_effects]})

    def to_html(self, top: int = 30) -> str:
        """The summary's tables as HTML (the report's section; a notebook's display): each fixed
        effect's intercept and ``top - 1`` largest coefficients, every random effect's variance components."""
        parts = []
        for fixed in self.fixed_effects:
            rows = "".join(f"<tr><td style='text-align:left'>{html.escape(c.feature)}</td><td>{shown(c.estimate)}</td>"
                           f"<td>{shown(c.std_error)}</td><td>{shown(c.z, '.3f')}</td><td>{shown(c.p_value, '.3g')}</td>"
                           f"<td>{shown(c.low)}</td><td>{shown(c.high)}</td></tr>" for c in largest_effects(fixed, top))
            parts.append(f"<h3>Fixed effect {html.escape(fixed.name)}</h3><p>{shown(fixed.rows, ',')} rows, l2 "
                         f"{shown(fixed.l2)}, variances {fixed.variance}; the intercept, then the {top - 1} largest {fixed.order} "
                         f"of {len(fixed.coefficients)} coefficients</p><table><tr><th>feature</th><th>estimate</th>"
                         f"<th>std. error</th><th>z</th><th>p</th><th>95% low</th><th>95% high</th></tr>{rows}</table>")
        if self.random_effects:
            rows = "".join(f"<tr><td style='text-align:left'>{html.escape(r.name)}</td><td>{r.entities:,}</td>"
                           f"<td>{shown(r.rows, ',')}</td><td style='text-align:left'>{kind}</td>"
                           f"<td>{r.prior_shown(kind)}</td><td>{shown(spread.variance)}</td>"
                           f"<td>{shown(spread.mean_posterior_sd)}</td></tr>"
                           for r in self.random_effects for kind, spread in r.estimates.items())
            parts.append("<h3>Random effects: variance components</h3><table><tr><th>coordinate</th><th>entities</th>"
                         "<th>rows</th><th>coefficients</th><th>prior variance</th><th>variance of estimates</th>"
                         f"<th>mean posterior SD</th></tr>{rows}</table>")
        return "".join(parts) or "<p>No GLM coordinates.</p>"

    def _repr_html_(self) -> str:
        return self.to_html()


def shown(value: float | int | None, spec: str = ".4g") -> str:
    """A summary's number as a table shows it; "-" for one the model does not have."""
    return "-" if value is None else format(value, spec)


def coefficient_row(feature: str, estimate: float, variance: float | None, dispersion: float = 1.0) -> Coefficient:
    """One coefficient's standard error, Wald z, two-sided p-value and 95% interval."""
    if variance is None:
        return Coefficient(feature, estimate, None, None, None, None, None)
    se = math.sqrt(max(variance, 0.0) * dispersion)
    z = estimate / se if se > 0 else math.inf
    return Coefficient(feature, estimate, se, z, float(2 * norm.sf(abs(z))), estimate - Z_95 * se, estimate + Z_95 * se)


def _report(model: CoordinateModel) -> dict[str, Any]:
    path = join(model.directory, TRAINING_REPORT)
    storage = storage_for(path)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else {}


def _feature(entry: dict[str, Any]) -> str:
    return f"{entry['name']} {entry['term']}" if entry["term"] else entry["name"]


def fixed_effect_summary(model: CoordinateModel) -> FixedEffectSummary:
    report = _report(model)
    config = report.get("config", {})
    dispersion = float(report.get("dispersion", 1.0))
    rows = []
    for record in read_avro_records(model.coefficients):
        variances = {(v["name"], v["term"]): v["value"] for v in record.get("variances") or []}
        rows += [coefficient_row(_feature(m), m["value"], variances.get((m["name"], m["term"])), dispersion)
                 for m in record["means"]]
    learned = report.get("learned_prior")
    l2 = learned["l2"]["slopes"] if learned else config.get("l2")
    return FixedEffectSummary(model.name, report.get("rows"), l2, config.get("variance", "none"), dispersion, rows)


def random_effect_summary(model: CoordinateModel) -> RandomEffectSummary:
    """One pass over the entities' records (each a small model; a million of them take most of the
    report's time), keeping each estimate's value, kind and variance in flat arrays."""
    report = _report(model)
    values, variances, intercepts = array("d"), array("d"), array("b")
    entities = 0
    has_variances = False        # a model published by any trainer (Photon ML's too) may carry them
    for record in read_avro_records(model.coefficients):
        entities += 1
        means = record["means"]
        values.extend([m["value"] for m in means])
        intercepts.extend([m["name"] == INTERCEPT_NAME for m in means])
        if record.get("variances"):
            has_variances = True
            by_key = {(v["name"], v["term"]): v["value"] for v in record["variances"]}
            variances.extend([by_key.get((m["name"], m["term"]), 0.0) for m in means])
        else:
            variances.extend([0.0] * len(means))
    estimates = np.frombuffer(values)
    sds = np.sqrt(np.maximum(np.frombuffer(variances), 0.0))
    is_intercept = np.frombuffer(intercepts, dtype=np.int8).astype(bool)
    spreads = {kind: Spread(int(mask.sum()), float(np.var(estimates[mask])),
                            float(sds[mask].mean()) if has_variances else None)
               for kind, mask in (("intercept", is_intercept), ("slopes", ~is_intercept)) if mask.any()}
    return RandomEffectSummary(model.name, model.entity_field, entities, report.get("rows"), prior_variances(report),
                               Histogram.of(estimates), spreads,
                               list((report.get("learned_prior") or {}).get("variances", {})))


def prior_variances(report: dict[str, Any]) -> dict[str, float | None]:
    """A random effect's prior variance of each kind, from its trainer's report: learned (``l2:
    auto``; a linear task's on the scale of its noise variance), else 1 / the configured weight
    (None where that kind is not regularized)."""
    config = report.get("params", {}).get("config", {})
    learned = report.get("learned_prior")
    l2, intercept_l2 = config.get("l2"), config.get("intercept_l2")
    if intercept_l2 is None:                      # the trainer's default: the slopes' weight
        intercept_l2 = l2
    if not config.get("regularize_intercept", True):
        intercept_l2 = None
    def inverse(weight: float | str | None) -> float | None:
        return 1 / weight if isinstance(weight, int | float) and weight else None
    variances = {"intercept": inverse(intercept_l2), "slopes": inverse(l2)}
    if learned:
        variances.update({kind: v * learned.get("dispersion", 1.0) for kind, v in learned["variances"].items()})
    return variances


def model_summary(directory: str) -> ModelSummary:
    """The summary of the GAME model published in ``directory``."""
    models, metadata = read_game_model(directory)
    return ModelSummary(directory, str(metadata.get("task", "")),
                        [fixed_effect_summary(m) for m in models if m.type == "fixed"],
                        [random_effect_summary(m) for m in models if m.type == "random"])


def largest_effects(summary: FixedEffectSummary, limit: int) -> list[Coefficient]:
    """The coefficients a reader looks at first: the intercept, then by |z| (by |estimate| without
    standard errors)."""
    def rank(c: Coefficient) -> tuple[bool, float]:
        return (c.feature != INTERCEPT_NAME, -abs(c.z if c.z is not None else c.estimate))
    return sorted(summary.coefficients, key=rank)[:limit]

