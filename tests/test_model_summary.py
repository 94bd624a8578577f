"""The model summary (issue 24 item 2): the fixed effect's standard errors, z, p-values and 95%
intervals match statsmodels' GLM on the same unregularized problem — rows with weights and offsets,
the three tasks — to 1e-4 relative; and a random effect's variance components by hand."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np
import pytest
import statsmodels.api as sm

from glmix.data.feature_index import FeatureIndex
from glmix.data.sparse_rows import load_rows
from glmix.io.schemas import parsed_schema
from glmix.model.game_model import CoordinateModel
from glmix.model.linear_model import LinearModel, write_models
from glmix.model.summary import coefficient_row, fixed_effect_summary, random_effect_summary
from glmix.settings import FeatureShard
from glmix.train.fixed_effect import FixedEffectConfig, Trainer
from jobs.index_features import index_features
from jobs.prepare_fixed_effect import prepare_fixed_effect

FAMILIES = {"logistic": sm.families.Binomial(), "poisson": sm.families.Poisson(), "linear": sm.families.Gaussian()}


def write_weighted_rows(path: Path, task: str, rows: int = 1500, seed: int = 3) -> None:
    """Rows with unequal weights, offsets and six dense features of different scales, as another
    pipeline writes them (weight and offset set on every row)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)) * np.array([1.0, 0.5, 2.0, 1.0, 0.3, 1.5])
    offset = rng.normal(0, 0.3, rows)
    margin = 0.2 + x @ np.array([0.8, -0.5, 0.3, 0.0, 1.2, -0.2]) + offset
    label = {"logistic": lambda: (rng.random(rows) < 1 / (1 + np.exp(-margin))).astype(float),
             "poisson": lambda: rng.poisson(np.exp(0.3 * margin)).astype(float),
             "linear": lambda: margin + rng.normal(0, 0.7, rows)}[task]()
    weight = rng.uniform(0.5, 2.0, rows)
    records = [{"uid": str(i), "label": float(label[i]), "weight": float(weight[i]), "offset": float(offset[i]),
                "features": [{"name": f"x{j}", "term": "", "value": float(x[i, j])} for j in range(6)]}
               for i in range(rows)]
    path.mkdir(parents=True)
    with open(path / "part-00000.avro", "wb") as out:
        fastavro.writer(out, parsed_schema("TrainingExample"), records)


@pytest.mark.parametrize("task", ["logistic", "poisson", "linear"])
def test_standard_errors_match_statsmodels(task: str, spark, tmp_path: Path) -> None:
    write_weighted_rows(tmp_path / "data", task)
    index_features(spark, str(tmp_path / "data"), str(tmp_path / "index"), FeatureShard(name="g", bags=("features",)))
    prepare_fixed_effect(spark, str(tmp_path / "data"), str(tmp_path / "index"), str(tmp_path / "prepared"), files=2)
    config = FixedEffectConfig(task=task, l2=0.0, variance="full", compute="scipy", validation_every=0, gtol=1e-12,
                               ftol=1e-15)
    Trainer(config, str(tmp_path / "index"), str(tmp_path / "prepared"), str(tmp_path / "model")).run()
    summary = fixed_effect_summary(CoordinateModel("global", "fixed", str(tmp_path / "model")))

    index = FeatureIndex.load(str(tmp_path / "index"))
    rows = load_rows(str(tmp_path / "prepared"))
    fit = sm.GLM(rows.label, rows.to_scipy(index.size).toarray(), family=FAMILIES[task], var_weights=rows.weight,
                 offset=rows.offset).fit(tol=1e-13, maxiter=200)
    by_feature = {c.feature: c for c in summary.coefficients}
    names = [name if not term else f"{name} {term}" for name, term in index.keys()]
    ours = {field: np.array([getattr(by_feature[n], field) for n in names])
            for field in ("estimate", "std_error", "z", "p_value", "low", "high")}
    interval = fit.conf_int()
    assert summary.rows == 1500 and summary.l2 == 0.0 and summary.variance == "full"
    assert sum(summary.histogram.counts) == len(summary.coefficients) == len(names)
    np.testing.assert_allclose(ours["estimate"], fit.params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours["std_error"], fit.bse, rtol=1e-4)
    np.testing.assert_allclose(ours["z"], fit.tvalues, rtol=1e-4)
    np.testing.assert_allclose(ours["p_value"], fit.pvalues, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(ours["low"], interval[:, 0], rtol=1e-4)
    np.testing.assert_allclose(ours["high"], interval[:, 1], rtol=1e-4)
    if task == "linear":   # the variances are the objective's; the dispersion scales them
        assert summary.dispersion == pytest.approx(fit.scale, rel=1e-6)
    else:
        assert summary.dispersion == 1.0


def test_a_coefficient_row_by_hand() -> None:
    row = coefficient_row("x", 1.96, 1.0)
    assert row.std_error == 1.0 and row.z == 1.96 and row.p_value == pytest.approx(0.04999579, rel=1e-6)
    assert (row.low, row.high) == pytest.approx((0.0, 3.92), abs=1e-4)
    assert coefficient_row("x", 1.0, 0.25, dispersion=4.0).std_error == 1.0
    unknown = coefficient_row("x", 0.5, None)       # trained without variances: the estimate alone
    assert unknown.estimate == 0.5 and unknown.std_error is None and unknown.p_value is None


def test_a_random_effects_variance_components_by_hand(tmp_path: Path) -> None:
    """Three entities' models as the random-effect trainer publishes them, with its report."""
    directory = tmp_path / "per-user"
    intercepts, slopes = [0.5, -1.0, 2.0], [0.1, 0.3]
    models = [LinearModel(f"u{k}", "logistic", {("(INTERCEPT)", ""): b, **({("genre", "x"): slopes[k]} if k < 2 else {})},
                          {("(INTERCEPT)", ""): 0.04, **({("genre", "x"): 0.01} if k < 2 else {})})
              for k, b in enumerate(intercepts)]
    write_models(str(directory / "model"), models)
    (directory / "_report.json").write_text(json.dumps({"rows": 42, "params": {"config": {
        "l2": 4.0, "intercept_l2": 0.5, "regularize_intercept": True, "variance": "simple"}}}))
    summary = random_effect_summary(CoordinateModel("per-user", "random", str(directory), "userId"))
    assert (summary.entities, summary.rows, summary.entity_field) == (3, 42, "userId")
    assert summary.prior_variance == {"intercept": 2.0, "slopes": 0.25}
    intercept, slope = summary.estimates["intercept"], summary.estimates["slopes"]
    assert intercept.values == 3 and intercept.variance == pytest.approx(np.var(intercepts))
    assert intercept.mean_posterior_sd == pytest.approx(0.2)
    assert slope.values == 2 and slope.variance == pytest.approx(np.var(slopes)) and slope.mean_posterior_sd == pytest.approx(0.1)
    counts, edges = np.histogram(intercepts + slopes, bins=50)   # what the report plots, from the same pass
    assert summary.histogram.counts == counts.tolist() and summary.histogram.edges == pytest.approx(edges.tolist())
    (directory / "_report.json").write_text(json.dumps({"params": {"config": {"l2": 4.0, "intercept_l2": None}}}))
    default = random_effect_summary(CoordinateModel("per-user", "random", str(directory), "userId"))
    assert default.prior_variance == {"intercept": 0.25, "slopes": 0.25}     # intercept_l2 defaults to l2
    # the variances come with the models (a Photon ML model's too), whatever the report says
    assert default.estimates["intercept"].mean_posterior_sd == pytest.approx(0.2)
    write_models(str(tmp_path / "bare" / "model"), [LinearModel("u0", "logistic", {("(INTERCEPT)", ""): 1.0})])
    bare = random_effect_summary(CoordinateModel("per-user", "random", str(tmp_path / "bare"), "userId"))
    assert bare.estimates["intercept"].mean_posterior_sd is None and bare.prior_variance == {"intercept": None,
                                                                                             "slopes": None}
    (directory / "_report.json").write_text(json.dumps({"params": {"config": {"l2": "auto"}}, "learned_prior": {
        "variances": {"intercept": 1.5, "slopes": 0.02}, "l2": {"intercept": 1 / 1.5, "slopes": 50.0},
        "dispersion": 2.0}}))
    learned = random_effect_summary(CoordinateModel("per-user", "random", str(directory), "userId"))
    assert learned.prior_variance == pytest.approx({"intercept": 3.0, "slopes": 0.04})   # x the noise variance
    assert learned.prior_shown("intercept") == "3 (learned)" and learned.prior_learned == ["intercept", "slopes"]
