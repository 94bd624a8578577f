"""Random-effect training: per-entity optimum vs scipy, recovery of true effects, warm start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from glmix.data.feature_index import FeatureIndex
from glmix.data.synthetic import generate, generic_spec
from glmix.errors import DataError
from glmix.glm.batched_newton import SolverSettings
from glmix.io.avro import read_avro_records
from glmix.io.schemas import INTERCEPT_NAME
from glmix.model.linear_model import read_models
from glmix.model.summary import prior_variances
from glmix.settings import FeatureShard
from glmix.train.prior_variance import learn_prior_variances
from glmix.train.random_effect import entity_problem, posteriors
from jobs.index_features import index_features
from jobs.partition_random_effect import partition_random_effect
from jobs.train_random_effect import RandomEffectConfig, train_random_effect
from tests.fe_reference import reference_objective


def true_offsets(data: Path, entity_field: str) -> pa.Table:
    """Each row's true score from every coordinate except the per-`entity_field` random effect."""
    truth = data / "truth"
    fixed = next(read_models(str(truth / "fixed-effect"))).means
    others = {}
    for sub in (truth / "random-effect").iterdir():
        if sub.name != entity_field:
            others[sub.name] = {m.model_id: m.means for m in read_models(str(sub))}
    bags = {"userId": "itemFeatures", "itemId": "userFeatures"}
    uids, scores = [], []
    for r in read_avro_records(str(data / "train")):
        keys = [(f["name"], f["term"], f["value"]) for b in ("features", "userFeatures", "itemFeatures") for f in r[b]]
        score = fixed[(INTERCEPT_NAME, "")] + sum(fixed[(n, t)] * v for n, t, v in keys)
        for field, models in others.items():
            coefficients = models[r[field]]
            score += coefficients[(INTERCEPT_NAME, "")] + sum(
                coefficients[(f["name"], f["term"])] * f["value"] for f in r[bags[field]])
        uids.append(r["uid"])
        scores.append(score)
    return pa.table({"uid": uids, "score": scores})


@pytest.fixture(scope="module")
def per_user(spark, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("re")
    spec = generic_spec(rows=30_000, users=150, items=15, context_dimension=20, context_nnz=3, seed=4)
    generate(spec.model_copy(update={"rows_per_file": 15_000, "validation_fraction": 0.0}), str(root / "data"))
    (root / "offsets").mkdir()
    pq.write_table(true_offsets(root / "data", "userId"), root / "offsets" / "part-0.parquet")
    index_features(spark, str(root / "data" / "train"), str(root / "index"),
                   FeatureShard(name="per-user", bags=("itemFeatures",)))
    partition_random_effect(spark, str(root / "data" / "train"), "userId", str(root / "index"), str(root / "re"),
                            offsets=str(root / "offsets"), lower_bound=3, partitions=3, task="logistic")
    return {"root": root, "data": str(root / "re"), "index": str(root / "index")}


def entity_arrays(partitioned: str) -> dict[str, dict]:
    return {r["entity_id"]: r for r in pq.read_table(str(Path(partitioned) / "active")).to_pylist()}


@pytest.mark.parametrize("l2,l1,intercept_l2", [(1.0, 0.0, None), (0.5, 0.2, None), (3.0, 0.0, 0.1)],
                         ids=["l2", "elastic-net", "weaker-intercept-l2"])
def test_every_entity_matches_scipy(spark, per_user, tmp_path: Path, l2: float, l1: float,
                                    intercept_l2: float | None) -> None:
    config = RandomEffectConfig(task="logistic", l2=l2, l1=l1, intercept_l2=intercept_l2)
    report = train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "m"), config)
    assert report["entities_not_converged"] == 0
    models = {m.model_id: m.means for m in read_models(str(tmp_path / "m" / "model"))}
    keys = FeatureIndex.load(per_user["index"]).keys()
    entities = entity_arrays(per_user["data"])
    assert len(models) == len(entities) == report["entities_trained"]
    worst = 0.0
    for entity_id, e in entities.items():
        n, d = e["n_rows"], len(e["features"])
        x = np.zeros((n, d))
        x[np.repeat(np.arange(n), e["row_nnz"]), np.searchsorted(e["features"], e["indices"])] = e["vals"]
        y, w, o = np.array(e["labels"]), np.array(e["weights"]), np.array(e["offsets"])
        b = np.array([models[entity_id].get(keys[g], 0.0) for g in e["features"]])
        l2s = np.where(np.asarray(e["features"]) == 0, l2 if intercept_l2 is None else intercept_l2, l2)
        loss_part = w @ (np.logaddexp(0, x @ b + o) - y * (x @ b + o))
        ours = loss_part + 0.5 * l2s @ (b * b) + l1 * np.abs(b).sum()
        expected = reference_objective(sp.csr_matrix(x), y, w, o, "logistic", l2s, np.full(d, l1))
        worst = max(worst, (ours - expected) / abs(expected))
    assert worst < 1e-6


def test_intercept_l2_needs_a_regularized_intercept() -> None:
    assert RandomEffectConfig(task="logistic", l2=2.0).intercept_weight == 2.0
    assert RandomEffectConfig(task="logistic", l2=2.0, regularize_intercept=False).intercept_weight == 0.0
    with pytest.raises(ValueError, match="intercept_l2 is set but regularize_intercept is off"):
        RandomEffectConfig(task="logistic", intercept_l2=0.5, regularize_intercept=False)


def test_recovers_true_random_effects(spark, per_user, tmp_path: Path) -> None:
    """The identifiable part of each user's effect is its score on the user's rows: compare those."""
    train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "m"),
                        RandomEffectConfig(task="logistic", l2=1.0))
    scores = pq.read_table(str(tmp_path / "m" / "scores" / "train"))
    learned = dict(zip(scores.column("uid").to_pylist(), scores.column("score").to_pylist(), strict=True))
    truth = {m.model_id: m.means for m in read_models(str(per_user["root"] / "data" / "truth" / "random-effect" /
                                                         "userId"))}
    pairs = []
    for r in read_avro_records(str(per_user["root"] / "data" / "train")):
        if r["uid"] in learned:
            means = truth[r["userId"]]
            true_score = means[(INTERCEPT_NAME, "")] + sum(means[(f["name"], f["term"])] * f["value"]
                                                           for f in r["itemFeatures"])
            pairs.append((true_score, learned[r["uid"]]))
    correlation = np.corrcoef(np.array(pairs).T)[0, 1]
    print(f"correlation of learned vs true per-user random-effect scores: {correlation:.3f} over {len(pairs)} rows")
    assert correlation > 0.8


def test_warm_start_from_optimum_takes_at_most_one_iteration(spark, per_user, tmp_path: Path) -> None:
    config = RandomEffectConfig(task="logistic", l2=1.0, variance="full")
    train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "first"), config)
    report = train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "warm"),
                                 config.model_copy(update={"warm_start": str(tmp_path / "first")}))
    assert max(report["iteration_histogram"]) <= 1
    # the same start from a production version's GAME model, named by a flow's pointer
    production = tmp_path / "production" / "random-effect" / "per-user"
    shutil.copytree(tmp_path / "first" / "model", production / "coefficients")
    (tmp_path / "production.json").write_text(json.dumps({"version": 2, "model": str(tmp_path / "production")}))
    retrained = train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "retrained"),
                                    config.model_copy(update={"production": str(tmp_path / "production.json"),
                                                              "production_warm_start": True}), model_id="per-user")
    assert max(retrained["iteration_histogram"]) <= 1 < max(
        train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "cold"), config)[
            "iteration_histogram"])
    simple = train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "simple"),
                                 config.model_copy(update={"variance": "simple"}))
    assert simple["entities_trained"] == report["entities_trained"]
    full = {m.model_id: m.variances for m in read_models(str(tmp_path / "first" / "model"))}
    for model in read_models(str(tmp_path / "simple" / "model")):
        assert all(0 < v <= full[model.model_id][k] * (1 + 1e-9) for k, v in model.variances.items())
    scores = pq.read_table(str(tmp_path / "first" / "scores" / "train")).column("uid").to_pylist()
    every_row = pq.read_table(per_user["root"] / "offsets").column("uid").to_pylist()
    assert sorted(scores) == sorted(every_row)   # active and passive rows, each once


def test_offsets_joined_at_training_match_offsets_joined_at_partitioning(spark, per_user, tmp_path: Path) -> None:
    """At training, the offsets may come in several sources (one per coordinate): they are summed."""
    root = per_user["root"]
    partition_random_effect(spark, str(root / "data" / "train"), "userId", per_user["index"], str(tmp_path / "plain"),
                            lower_bound=3, partitions=3, task="logistic")
    offsets = pq.read_table(root / "offsets")
    for k, share in enumerate((0.25, 0.75)):
        (tmp_path / f"source-{k}").mkdir()
        pq.write_table(offsets.set_column(1, "score", pc.multiply(offsets.column("score"), share)),
                       tmp_path / f"source-{k}" / "part-0.parquet")
    config = RandomEffectConfig(task="logistic", l2=1.0)
    train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "joined-before"), config)
    report = train_random_effect(spark, str(tmp_path / "plain"), per_user["index"], str(tmp_path / "joined-at"),
                                 config, offsets=[str(tmp_path / "source-0"), str(tmp_path / "source-1")])
    assert report["entities_not_converged"] == 0
    before = {m.model_id: m.means for m in read_models(str(tmp_path / "joined-before" / "model"))}
    at = {m.model_id: m.means for m in read_models(str(tmp_path / "joined-at" / "model"))}
    assert before.keys() == at.keys()
    for entity, means in before.items():
        assert at[entity] == pytest.approx(means, rel=1e-9, abs=1e-12)


def test_a_training_row_without_a_score_is_named(spark, per_user, tmp_path: Path) -> None:
    offsets = pq.read_table(per_user["root"] / "offsets")
    gone = next(iter(entity_arrays(per_user["data"]).values()))["uids"][0]     # an active row's score is gone
    (tmp_path / "offsets").mkdir()
    pq.write_table(offsets.filter(pc.not_equal(offsets.column("uid"), gone)), tmp_path / "offsets" / "p.parquet")
    with pytest.raises(DataError, match=rf"1 training row\(s\) have no score in the offsets \(e.g. uid {gone}\)"):
        train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "m"),
                            RandomEffectConfig(task="logistic"), offsets=[str(tmp_path / "offsets")])
    assert not (tmp_path / "m").exists()


def test_a_uid_repeated_in_the_offsets_is_named(spark, per_user, tmp_path: Path) -> None:
    """Counted while joining (no pass over the scores to check them first), in one source of two."""
    offsets = pq.read_table(per_user["root"] / "offsets")
    twice = next(iter(entity_arrays(per_user["data"]).values()))["uids"][0]
    for k in range(2):
        (tmp_path / f"source-{k}").mkdir()
        pq.write_table(offsets, tmp_path / f"source-{k}" / "p.parquet")
    pq.write_table(offsets.filter(pc.equal(offsets.column("uid"), twice)), tmp_path / "source-1" / "again.parquet")
    with pytest.raises(DataError, match=rf"uid '{twice}' is on 2 rows .* uids must be unique in a dataset"):
        train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "m"),
                            RandomEffectConfig(task="logistic"),
                            offsets=[str(tmp_path / "source-0"), str(tmp_path / "source-1")])
    assert not (tmp_path / "m").exists()


def test_rows_without_a_trained_model_are_scored(spark, per_user, tmp_path: Path) -> None:
    """Rows removed by down-sampling score with their entity's model, rows of entities under the lower
    bound score 0: the scores cover every training row, as the next coordinate's offsets must."""
    root = per_user["root"]
    report = partition_random_effect(spark, str(root / "data" / "train"), "userId", per_user["index"],
                                     str(tmp_path / "p"), lower_bound=60, upper_bound=400, partitions=2,
                                     task="logistic")
    assert report["entities_passive"] > 0 and report["rows_removed_by_down_sampling"] > 0
    train_random_effect(spark, str(tmp_path / "p"), per_user["index"], str(tmp_path / "m"),
                        RandomEffectConfig(task="logistic", l2=1.0))
    table = pq.read_table(str(tmp_path / "m" / "scores" / "train"))
    scores = dict(zip(table.column("uid").to_pylist(), table.column("score").to_pylist(), strict=True))
    models = {m.model_id: m.means for m in read_models(str(tmp_path / "m" / "model"))}
    rows = list(read_avro_records(str(root / "data" / "train")))
    assert len(scores) == len(table) == len(rows)
    expected = {r["uid"]: models[r["userId"]][(INTERCEPT_NAME, "")] + sum(
        models[r["userId"]].get((f["name"], f["term"]), 0.0) * f["value"] for f in r["itemFeatures"])
        if r["userId"] in models else 0.0 for r in rows}
    assert scores == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_l2_auto_learns_the_prior_then_trains_under_it(spark, per_user, tmp_path: Path) -> None:
    """The Spark passes learn the variances the numpy search learns on the same entities; the model
    is then the one a fixed l2 of those values gives; the next pass starts where this one ended."""
    config = RandomEffectConfig(task="logistic", l2="auto", prior_tolerance=1e-7)
    report = train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "auto"), config)
    learned = report["learned_prior"]
    assert learned["converged"] and 1 < learned["iterations"] <= 15
    assert report["params"]["config"]["l2"] == "auto"

    index = FeatureIndex.load(per_user["index"])
    rows = list(entity_arrays(per_user["data"]).values())
    intercepts = [np.asarray(r["features"]) == 0 for r in rows]

    def posteriors_at(variances):
        weights = config.with_prior_variances(variances)
        problems = [entity_problem(r, weights, True, index.names, index.terms) for r in rows]
        return posteriors(problems, intercepts, SolverSettings(task="logistic"))

    in_numpy = learn_prior_variances({"intercept": 1.0, "slopes": 1.0}, posteriors_at, False, 30, 1e-7)
    for kind in ("intercept", "slopes"):
        assert learned["variances"][kind] == pytest.approx(in_numpy.variances[kind], rel=1e-6)

    fixed = RandomEffectConfig(task="logistic", l2=learned["l2"]["slopes"], intercept_l2=learned["l2"]["intercept"])
    train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "fixed"), fixed)
    ours = {m.model_id: m.means for m in read_models(str(tmp_path / "auto" / "model"))}
    for model in read_models(str(tmp_path / "fixed" / "model")):
        for key, value in model.means.items():
            assert ours[model.model_id][key] == pytest.approx(value, rel=1e-9, abs=1e-12)

    summary_prior = prior_variances(json.loads((tmp_path / "auto" / "_report.json").read_text()))
    assert summary_prior == pytest.approx(learned["variances"])

    again = train_random_effect(spark, per_user["data"], per_user["index"], str(tmp_path / "next-pass"),
                                config.model_copy(update={"warm_start": str(tmp_path / "auto")}))
    assert again["learned_prior"]["iterations"] == 1     # started at the fixed point
