"""Scoring, evaluation and coordinate-descent offsets on hand-computed cases (Spark local)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from glmix.data.feature_index import write_shard_meta
from glmix.errors import ConfigError, DataError
from glmix.glm.metrics import Evaluator, precision_at_k
from glmix.io.avro import read_avro_records
from glmix.io.schemas import INTERCEPT_NAME
from glmix.io.scores import offsets_for
from glmix.model.game_model import CoordinateModel, publish_game_model, read_game_model
from glmix.model.linear_model import LinearModel, write_models
from glmix.settings import FeatureShard
from glmix.spark.evaluation import evaluate, read_metrics
from glmix.spark.job_args import ScoreArgs
from glmix.spark.scoring import score
from jobs import score as score_job
from jobs.index_features import index_features
from jobs.partition_random_effect import partition_random_effect
from tests.test_spark_jobs import SMALL, write

INTERCEPT = (INTERCEPT_NAME, "")


def coordinate(root: Path, name: str, shard: FeatureShard, models: list[LinearModel]) -> str:
    write_models(str(root / name / "model"), models)
    write_shard_meta(str(root / name), shard, 0)
    return str(root / name)


@pytest.fixture()
def game(tmp_path: Path) -> list[CoordinateModel]:
    fixed = coordinate(tmp_path / "m", "global", FeatureShard(name="g", bags=("features",)),
                       [LinearModel("global", "logistic", {("a", ""): 0.5, ("b", "x"): -1.0, INTERCEPT: 0.1})])
    random = coordinate(tmp_path / "m", "per-user", FeatureShard(name="u", bags=("userFeatures",)), [
        LinearModel("u1", "logistic", {("age", "25"): 2.0, INTERCEPT: -0.3}),
        LinearModel("u2", "logistic", {("age", "25"): 1.0})])          # no intercept coefficient: 0
    return [CoordinateModel("global", "fixed", fixed), CoordinateModel("per-user", "random", random, "userId")]


def test_scores_are_the_hand_computed_dot_products(spark, tmp_path: Path, game) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    report = score(spark, {"validation": data}, game, str(tmp_path / "scores"), model_id="m")
    rows = {r["uid"]: r for r in read_avro_records(str(tmp_path / "scores" / "validation"))}
    expected = {  # uid: (global, per-user, offset)
        "1": (0.1 + 0.5 * 2.0 - 1.0, 2.0 - 0.3, 0.0),
        "2": (0.1 + 0.5 * (-0.5), -0.3, 0.0),        # (a, '') repeated: -1 + 0.5; age 35 has no coefficient
        "3": (0.1, 1.0, 0.5),                          # c has no coefficient
        "4": (0.1, 0.0, 0.0)}                          # u3 has no model: 0
    for uid, (fixed, random, offset) in expected.items():
        assert rows[uid]["coordinateScores"] == pytest.approx({"global": fixed, "per-user": random})
        assert rows[uid]["predictionScore"] == pytest.approx(offset + fixed + random)
        assert rows[uid]["metadataMap"] == {"userId": {"1": "u1", "2": "u1", "3": "u2", "4": "u3"}[uid]}
        assert rows[uid]["modelId"] == "m"
    assert report["validation"]["rows_with_model"] == {"global": 4, "per-user": 3}


def test_a_published_game_model_scores_the_same(spark, tmp_path: Path, game) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    publish_game_model(str(tmp_path / "best"), game, {"task": "logistic"})
    models, metadata = read_game_model(str(tmp_path / "best"))
    assert metadata["coordinates"]["per-user"] == {"type": "random", "entity_field": "userId",
                                                   "shard": FeatureShard(name="u", bags=("userFeatures",))
                                                   .model_dump(mode="json")}
    assert (tmp_path / "best" / "random-effect" / "per-user" / "coefficients").is_dir()
    score(spark, {"v": data}, game, str(tmp_path / "a"))
    score(spark, {"v": data}, models, str(tmp_path / "b"))
    first = sorted((r["uid"], r["predictionScore"]) for r in read_avro_records(str(tmp_path / "a" / "v")))
    assert first == sorted((r["uid"], r["predictionScore"]) for r in read_avro_records(str(tmp_path / "b" / "v")))


def test_evaluation_matches_scikit_learn(spark, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 400
    users = rng.integers(0, 12, n).astype(str)
    y = rng.integers(0, 2, n).astype(float)
    margin = y + rng.normal(size=n)
    records = [{"uid": str(i), "label": float(y[i]), "weight": 1.0, "modelId": "m", "predictionScore": float(margin[i]),
                "coordinateScores": {}, "metadataMap": {"userId": users[i]}} for i in range(n)]
    from glmix.io.avro import write_avro_parts
    from glmix.io.schemas import parsed_schema

    write_avro_parts(str(tmp_path / "scores"), parsed_schema("ScoringResult"), records)
    evaluate(spark, str(tmp_path / "scores"), str(tmp_path / "metrics"),
             ["AUC", "AUPR", "LOGISTIC_LOSS", "AUC:userId", "PRECISION@3:userId"], coordinate="c", pass_index=1)
    metrics = read_metrics(str(tmp_path / "metrics"))
    assert metrics["metrics"]["AUC"] == pytest.approx(roc_auc_score(y, margin), rel=1e-12)
    assert metrics["metrics"]["AUPR"] == pytest.approx(average_precision_score(y, margin), rel=1e-12)
    assert metrics["metrics"]["LOGISTIC_LOSS"] == pytest.approx(log_loss(y, 1 / (1 + np.exp(-margin))), rel=1e-9)
    per_user = [roc_auc_score(y[users == u], margin[users == u]) for u in np.unique(users)
                if len(np.unique(y[users == u])) == 2]
    assert metrics["metrics"]["AUC:userId"] == pytest.approx(np.mean(per_user), rel=1e-12)
    assert metrics["groups"]["AUC:userId"] == len(per_user)
    assert metrics["coordinate"] == "c" and metrics["pass"] == 1
    (avro,) = list(read_avro_records(str(tmp_path / "metrics" / "metrics")))
    assert avro["metrics"]["AUC"] == metrics["metrics"]["AUC"]


def test_the_score_job_evaluates_what_it_scored_as_the_evaluate_job_does(spark, tmp_path: Path, game) -> None:
    """A flow step's one node: jobs/score with --evaluators and --metrics, in one Spark application."""
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    publish_game_model(str(tmp_path / "best"), game, {"task": "logistic"})
    evaluators = ["AUC", "LOGISTIC_LOSS", "AUC:userId"]
    args = ScoreArgs.from_argv(["--data", f"validation={data}", "--model", str(tmp_path / "best"),
                                "--output", str(tmp_path / "scores"), "--metrics", str(tmp_path / "metrics"),
                                "--evaluators", ",".join(evaluators), "--coordinate", "per-user", "--pass-index", "0"])
    report = score_job.run(spark, args)
    evaluate(spark, str(tmp_path / "scores" / "validation"), str(tmp_path / "alone"), evaluators, "per-user", 0)
    together, alone = read_metrics(str(tmp_path / "metrics")), read_metrics(str(tmp_path / "alone"))
    assert together["metrics"] == alone["metrics"] and together["groups"] == alone["groups"]
    assert (together["coordinate"], together["pass"], together["rows"]) == ("per-user", 0, len(SMALL))
    assert report["evaluation"]["rows"] == len(SMALL) and report["evaluation"]["job"] == "evaluate"
    with pytest.raises(ConfigError, match="--metrics and --evaluators go together"):
        ScoreArgs.from_argv(["--data", f"v={data}", "--output", "o", "--metrics", "m"])
    with pytest.raises(ConfigError, match="score.evaluators: Value error, unknown evaluator 'ACCURACY'"):
        ScoreArgs.from_argv(["--data", f"v={data}", "--output", "o", "--metrics", "m", "--evaluators", "AUC,ACCURACY"])
    with pytest.raises(ConfigError, match="give one --data"):
        ScoreArgs.from_argv(["--data", f"v={data}", "--data", f"w={data}", "--output", "o", "--metrics", "m",
                             "--evaluators", "AUC"])


def test_grouped_metrics_skip_groups_where_they_are_undefined() -> None:
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    score = np.array([0.9, 0.1, 0.2, 0.5, 0.6, 0.3])
    assert Evaluator.parse("AUC").grouped(groups, y, score, np.ones(6)) == (1.0, 1)       # b and c have one label
    assert precision_at_k(y[:3], score[:3], 2) == 1.0 and precision_at_k(y[:3], score[:3], 3) == pytest.approx(2 / 3)
    value, count = Evaluator.parse("PRECISION@1").grouped(groups, y, score, np.ones(6))   # b has no positive
    assert (value, count) == (1.0, 2)


def test_grouped_auc_equals_roc_auc_score_per_group_with_ties_and_weights() -> None:
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 40, 3000).astype(str)
    y = (rng.random(3000) < 0.3).astype(float)
    score = np.round(rng.normal(size=3000), 1)     # many ties within a group
    weight = rng.random(3000) * 2
    expected = [roc_auc_score(y[groups == g], score[groups == g], sample_weight=weight[groups == g])
                for g in np.unique(groups) if len(np.unique(y[groups == g])) == 2]
    value, count = Evaluator.parse("AUC").grouped(groups, y, score, weight)
    assert count == len(expected) and value == pytest.approx(np.mean(expected), rel=1e-12)


def test_offsets_leave_out_the_coordinate_being_trained(spark, tmp_path: Path, game) -> None:
    data = write(tmp_path / "data" / "part-0.avro", SMALL)
    score(spark, {"train": data}, game, str(tmp_path / "scores"))
    scores = str(tmp_path / "scores" / "train")
    index_features(spark, data, str(tmp_path / "index"), FeatureShard(name="u", bags=("userFeatures",)))
    partition_random_effect(spark, data, "userId", str(tmp_path / "index"), str(tmp_path / "re"), offsets=scores,
                            offsets_exclude="per-user")
    active = pq.read_table(tmp_path / "re" / "active").to_pylist()
    offsets = {uid: o for entity in active for uid, o in zip(entity["uids"], entity["offsets"], strict=True)}
    # the row's own offset plus the global score only
    assert offsets == pytest.approx({"1": 0.1, "2": -0.15, "3": 0.5 + 0.1, "4": 0.1})
    from_avro = offsets_for(np.array(["3", "1"], dtype=object), [scores], exclude="global")
    assert from_avro == pytest.approx([1.0, 1.7])


def test_offsets_sum_the_sources_and_a_row_missing_from_one_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pq.write_table(pa.table({"uid": ["1", "2"], "score": [0.5, 0.25]}), tmp_path / "a" / "part-0.parquet")
    pq.write_table(pa.table({"uid": ["2", "1"], "score": [1.0, 2.0]}), tmp_path / "b" / "part-0.parquet")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert offsets_for(np.array(["2", "1"], dtype=object), [a]) == pytest.approx([0.25, 0.5])
    assert offsets_for(np.array(["2", "1"], dtype=object), [a, b]) == pytest.approx([1.25, 2.5])
    with pytest.raises(DataError, match=r"2 row\(s\) have no score in the offsets \(e.g. uid 7, 8\)"):
        offsets_for(np.array(["1", "7", "8"], dtype=object), [a, b])
    with pytest.raises(DataError, match=r"uid '2' is on 2 rows .* uids must be unique"):   # rows, not scores, repeat it
        offsets_for(np.array(["2", "1", "2"], dtype=object), [a])
