"""The synthetic generator: determinism, statistics, and a truth model that matches the data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from glmix.data.synthetic import generic_spec, load_spec, movielens_spec
from glmix.errors import ConfigError
from glmix.io.avro import read_avro_records
from glmix.io.schemas import INTERCEPT_NAME
from glmix.model.linear_model import read_models


def small_spec(**overrides):
    spec = generic_spec(rows=3000, users=200, items=50, context_dimension=50, context_nnz=5, seed=3)
    return spec.model_copy(update={"rows_per_file": 1000, **overrides})


def records_of(path: Path) -> list[dict]:
    return list(read_avro_records(str(path)))


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    from glmix.data.synthetic import generate

    generate(small_spec(), str(tmp_path / "a"))
    generate(small_spec(), str(tmp_path / "b"), processes=2)
    generate(small_spec(seed=4), str(tmp_path / "c"))
    for split in ("train", "validation", "truth"):
        assert records_of(tmp_path / "a" / split) == records_of(tmp_path / "b" / split)
    assert records_of(tmp_path / "a" / "train") != records_of(tmp_path / "c" / "train")


def test_layout_counts_and_metadata(tmp_path: Path) -> None:
    from glmix.data.synthetic import generate

    summary = generate(small_spec(), str(tmp_path / "d"))
    out = tmp_path / "d"
    assert (out / "_SUCCESS").exists()
    assert sorted(p.name for p in (out / "train").iterdir()) == ["part-00000.avro", "part-00001.avro",
                                                                "part-00002.avro"]
    train, validation = records_of(out / "train"), records_of(out / "validation")
    assert len(train) + len(validation) == 3000
    assert len(train) == summary.train_rows
    assert 0.15 < len(validation) / 3000 < 0.25
    assert len({r["uid"] for r in train + validation}) == 3000
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["spec"]["rows"] == 3000 and metadata["summary"]["train_rows"] == len(train)
    record = train[0]
    assert len(record["features"]) == 5 and len(record["userFeatures"]) == 5 and len(record["itemFeatures"]) == 5
    assert len({(f["name"], f["term"]) for f in record["features"]}) == 5


def test_zipf_skew_and_label_rate(tmp_path: Path) -> None:
    from glmix.data.synthetic import generate

    spec = small_spec(rows=20_000, rows_per_file=20_000)
    summary = generate(spec, str(tmp_path / "z"))
    users = summary.rows_per_entity["userId"]
    # Zipf(1) over 200 users: the most popular has 1/H(200) ~ 17% of the rows; uniform would be 0.5%.
    assert 0.13 < users["max"] / 20_000 < 0.21
    assert users["top_1pct_row_share"] > 0.2
    assert 0.3 < summary.label_mean < 0.7


@pytest.mark.parametrize("task", ["linear", "poisson", "logistic"])
def test_truth_model_explains_labels(tmp_path: Path, task: str) -> None:
    """Recompute each row's score from the written truth model: the labels must follow it."""
    from glmix.data.synthetic import generate

    spec = small_spec(task=task, noise_std=0.01, validation_fraction=0.0)
    generate(spec, str(tmp_path / task))
    truth = tmp_path / task / "truth"
    fixed = next(read_models(str(truth / "fixed-effect"))).means
    users = {m.model_id: m.means for m in read_models(str(truth / "random-effect" / "userId"))}
    items = {m.model_id: m.means for m in read_models(str(truth / "random-effect" / "itemId"))}
    scores, labels = [], []
    for r in records_of(tmp_path / task / "train"):
        bags = {b: {(f["name"], f["term"]): f["value"] for f in r[b]} for b in ("features", "userFeatures",
                                                                               "itemFeatures")}
        score = fixed[(INTERCEPT_NAME, "")] + sum(fixed[k] * v for bag in bags.values() for k, v in bag.items())
        user, item = users[r["userId"]], items[r["itemId"]]
        score += user[(INTERCEPT_NAME, "")] + sum(user[k] * v for k, v in bags["itemFeatures"].items())
        score += item[(INTERCEPT_NAME, "")] + sum(item[k] * v for k, v in bags["userFeatures"].items())
        scores.append(score)
        labels.append(r["label"])
    scores, labels = np.array(scores), np.array(labels)
    if task == "linear":
        assert np.abs(labels - scores).max() < 0.06
    elif task == "poisson":
        assert abs(labels.mean() / np.exp(scores).mean() - 1) < 0.05
    else:
        assert abs(labels.mean() - (1 / (1 + np.exp(-scores))).mean()) < 0.02
        assert np.corrcoef(scores, labels)[0, 1] > 0.3


def test_movielens_shape() -> None:
    spec = movielens_spec()
    assert spec.rows == 100_000
    assert [(e.id_field, e.count) for e in spec.entities] == [("userId", 943), ("movieId", 1682)]
    assert {a.name for a in spec.entities[0].attributes} == {"age", "gender", "occupation"}
    assert {a.name for a in spec.entities[1].attributes} == {"genre", "decade"}


def test_invalid_specs_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_spec("nope")
    with pytest.raises(ValueError, match="random_effect_bag 'missing'"):
        small_spec().model_validate({**small_spec().model_dump(), "entities": [
            {**small_spec().entities[0].model_dump(), "random_effect_bag": "missing"}]})
