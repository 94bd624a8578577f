"""Feature normalization (issue 24 item 3), Photon ML's three kinds: the fixed effect or a random
effect trained with a normalized shard predicts what the same GLM trained on data normalized
beforehand predicts, and its model is saved in the original space."""

from __future__ import annotations

from pathlib import Path

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from glmix.data.sparse_rows import load_rows
from glmix.errors import ConfigError, GlmixError
from glmix.game.config import GameConfig
from glmix.glm.normalization import Normalization
from glmix.io.schemas import parsed_schema
from glmix.model.linear_model import read_models
from glmix.settings import FeatureShard
from glmix.train.fixed_effect import FixedEffectConfig, Trainer, read_model
from jobs.index_features import index_features
from jobs.partition_random_effect import partition_random_effect
from jobs.prepare_fixed_effect import prepare_fixed_effect
from jobs.train_random_effect import RandomEffectConfig, train_random_effect
from tests.test_model_summary import write_weighted_rows

KINDS = ["standardization", "scale_with_standard_deviation", "scale_with_max_magnitude"]


def test_the_change_of_variables_and_its_inverse() -> None:
    rng = np.random.default_rng(0)
    norm = Normalization.from_statistics("standardization", rng.normal(size=5), rng.uniform(0.5, 2, 5),
                                         -rng.uniform(1, 3, 5), rng.uniform(1, 3, 5), intercept=0)
    z, g = rng.normal(size=5), rng.normal(size=5)
    t = norm.matrix()
    assert np.allclose(norm.to_original(z), t @ z) and np.allclose(norm.gradient_to_normalized(g), t.T @ g)
    assert np.allclose(norm.to_normalized(norm.to_original(z)), z)
    assert norm.factors[0] == 1.0 and norm.shifts[0] == 0.0           # the intercept is left alone
    constant = Normalization.from_statistics("scale_with_standard_deviation", np.ones(3), np.array([0.0, 4.0, 0.0]),
                                             np.zeros(3), np.ones(3), intercept=None)
    assert list(constant.factors) == [1.0, 0.5, 1.0]                    # no spread: factor 1
    with pytest.raises(ValueError, match="needs the shard's intercept"):
        Normalization.from_statistics("standardization", np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), None)


def _index_and_prepare(spark, data: Path, root: Path, shard: FeatureShard) -> tuple[str, str]:
    index_features(spark, str(data), str(root / "index"), shard)
    prepare_fixed_effect(spark, str(data), str(root / "index"), str(root / "prepared"), files=2)
    return str(root / "index"), str(root / "prepared")


def _normalized_copy(data: Path, target: Path, kind: str) -> None:
    """The same rows with every feature normalized beforehand, from statistics computed here."""
    with open(data / "part-00000.avro", "rb") as stream:
        reader = fastavro.reader(stream)
        schema, records = reader.writer_schema, list(reader)
    x = np.array([[f["value"] for f in r["features"]] for r in records])
    spread = np.abs(x).max(axis=0) if kind == "scale_with_max_magnitude" else x.std(axis=0)
    shift = x.mean(axis=0) if kind == "standardization" else np.zeros(x.shape[1])
    normalized = (x - shift) / spread
    for r, row in zip(records, normalized, strict=True):
        r["features"] = [dict(f, value=float(v)) for f, v in zip(r["features"], row, strict=True)]
    target.mkdir(parents=True)
    with open(target / "part-00000.avro", "wb") as out:
        fastavro.writer(out, schema, records)


@pytest.mark.parametrize("kind", KINDS)
def test_a_normalized_shard_predicts_as_data_normalized_beforehand(kind: str, spark, tmp_path: Path) -> None:
    write_weighted_rows(tmp_path / "raw", "logistic")
    _normalized_copy(tmp_path / "raw", tmp_path / "normalized", kind)
    config = FixedEffectConfig(task="logistic", l2=5.0, compute="scipy", validation_every=0, variance="full")
    index, prepared = _index_and_prepare(spark, tmp_path / "raw", tmp_path / "a",
                                         FeatureShard(name="g", bags=("features",), normalization=kind))
    report = Trainer(config, index, prepared, str(tmp_path / "model")).run().report
    ref_index, ref_prepared = _index_and_prepare(spark, tmp_path / "normalized", tmp_path / "b",
                                                 FeatureShard(name="g", bags=("features",)))
    Trainer(config, ref_index, ref_prepared, str(tmp_path / "reference")).run()

    model, reference = read_model(str(tmp_path / "model")), read_model(str(tmp_path / "reference"))
    raw, normalized = load_rows(prepared), load_rows(ref_prepared)
    b = np.array(list(model.means.values()))                              # saved in the original space
    ours = raw.to_scipy(len(b)) @ b
    by_uid = dict(zip(normalized.uid, normalized.to_scipy(len(b)) @ np.array(list(reference.means.values())),
                      strict=True))
    theirs = np.array([by_uid[u] for u in raw.uid])                       # the same rows, in the same order
    assert report["converged"] and np.allclose(ours, theirs, rtol=0, atol=1e-6)
    if kind == "standardization":   # L2 acted on the normalized coefficients: plain training predicts otherwise
        plain_index, plain_rows = _index_and_prepare(spark, tmp_path / "raw", tmp_path / "c",
                                                     FeatureShard(name="g", bags=("features",)))
        Trainer(config, plain_index, plain_rows, str(tmp_path / "plain")).run()
        plain = np.array(list(read_model(str(tmp_path / "plain")).means.values()))
        assert np.abs(raw.to_scipy(len(b)) @ plain - ours).max() > 1e-3
    # the variances are the original coefficients': the same model's variances mapped back
    ref_var = np.array(list(reference.variances.values()))
    ours_var = np.array(list(model.variances.values()))
    slopes = slice(1, None)
    factors = b[slopes] / np.array(list(reference.means.values()))[slopes]
    assert np.allclose(ours_var[slopes], ref_var[slopes] * factors ** 2, rtol=1e-5)


def _write_entity_rows(path: Path, users: int = 30, rows: int = 1200, seed: int = 5) -> None:
    """Rows of a few users with three dense features of different scales and a userId field."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) * np.array([3.0, 0.2, 1.0]) + np.array([1.0, 0.0, -2.0])
    user = rng.integers(0, users, rows)
    taste = rng.normal(0, 0.5, (users, 3))
    margin = rng.normal(0, 1, users)[user] + np.einsum("ij,ij->i", x, taste[user]) * 0.3
    label = (rng.random(rows) < 1 / (1 + np.exp(-margin))).astype(float)
    schema = parsed_schema("TrainingExample")
    schema = {**schema, "fields": [*schema["fields"], {"name": "userId", "type": "string"}]}
    records = [{"uid": str(i), "label": float(label[i]), "weight": 1.0, "offset": 0.0, "userId": f"u{user[i]}",
                "features": [{"name": f"x{j}", "term": "", "value": float(x[i, j])} for j in range(3)]}
               for i in range(rows)]
    path.mkdir(parents=True)
    with open(path / "part-00000.avro", "wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), records)


def test_a_normalized_random_effect_predicts_as_data_normalized_beforehand(spark, tmp_path: Path) -> None:
    """Standardization (a scale and a shift per feature): the other kinds are its special cases."""
    kind = "standardization"
    _write_entity_rows(tmp_path / "raw")
    _normalized_copy(tmp_path / "raw", tmp_path / "normalized", kind)
    config = RandomEffectConfig(task="logistic", l2=2.0, variance="full")
    scores, models = {}, {}
    for name, data, normalization in (("ours", "raw", kind), ("reference", "normalized", "none")):
        root = tmp_path / name
        index_features(spark, str(tmp_path / data), str(root / "index"),
                       FeatureShard(name="per-user", bags=("features",), normalization=normalization))
        partition_random_effect(spark, str(tmp_path / data), "userId", str(root / "index"), str(root / "re"),
                                partitions=2, task="logistic")
        train_random_effect(spark, str(root / "re"), str(root / "index"), str(root / "model"), config)
        table = pq.read_table(str(root / "model" / "scores" / "train"))
        scores[name] = dict(zip(table.column("uid").to_pylist(), table.column("score").to_pylist(), strict=True))
        models[name] = {m.model_id: m for m in read_models(str(root / "model" / "model"))}
    assert scores["ours"].keys() == scores["reference"].keys()
    assert max(abs(scores["ours"][u] - scores["reference"][u]) for u in scores["ours"]) < 1e-6
    for user, ours in models["ours"].items():      # saved in the original space: variances mapped back
        reference = models["reference"][user]
        for key in (("x0", ""), ("x1", ""), ("x2", "")):
            factor = ours.means[key] / reference.means[key]
            assert ours.variances[key] == pytest.approx(reference.variances[key] * factor ** 2, rel=1e-5)


def test_standardization_without_an_intercept_and_a_normalized_keras_shard_are_refused(spark, tmp_path: Path) -> None:
    write_weighted_rows(tmp_path / "raw", "logistic", rows=200)
    index, prepared = _index_and_prepare(spark, tmp_path / "raw", tmp_path / "a", FeatureShard(
        name="g", bags=("features",), intercept=False, normalization="standardization"))
    with pytest.raises(GlmixError, match="feature shard g: normalization 'standardization' needs the shard's intercept"):
        Trainer(FixedEffectConfig(task="logistic"), index, prepared, str(tmp_path / "model")).run()
    with pytest.raises(ConfigError, match="coordinates.deep: feature shard 'n' is normalized, which only a GLM"):
        GameConfig.from_dict({
            "name": "n", "task": "logistic", "input": {"train": "t", "validation": "v"}, "output": "o",
            "feature_shards": [{"name": "n", "bags": ["features"], "normalization": "scale_with_max_magnitude"}],
            "coordinates": {"deep": {"type": "fixed", "model_type": "keras", "shard": "n"}},
            "update_sequence": ["deep"]})
