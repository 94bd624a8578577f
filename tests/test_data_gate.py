"""The data gate (issue 22 item 3): a training window's statistics in Spark against the production
version's window, on Photon-ML-shaped files (null uids, unions, ids in metadataMap, renamed columns,
empty files), with drift made by hand: a feature's values moved, ids lost, features never seen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from scipy.stats import ks_2samp

from glmix.errors import ConfigError, GlmixError
from glmix.flow.azkaban import read_project
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.registry import ModelRegistry
from glmix.registry.data_gate import binned_ks, judge, production_data, psi
from glmix.settings import DataGateSettings
from glmix.spark.job_args import DataGateArgs
from jobs import data_gate
from tests.photon_data import RENAMED, write_photon_dataset


def test_psi_and_binned_ks_by_hand() -> None:
    e, a = np.array([0.2, 0.3, 0.5]), np.array([0.25, 0.25, 0.5])
    assert psi(e, e) == 0.0
    assert psi(e, a) == pytest.approx(0.05 * np.log(0.25 / 0.2) - 0.05 * np.log(0.25 / 0.3))
    # values at points, binned at cuts between them (rows without the feature: value 0) the binned
    # KS is scipy's two-sample statistic on the raw values
    rng = np.random.default_rng(0)
    x, y = rng.choice([0, 1, 2, 3], 500, p=[0.4, 0.3, 0.2, 0.1]), rng.choice([0, 1, 2, 3], 400, p=[0.2, 0.3, 0.3, 0.2])

    def binned(v: np.ndarray) -> np.ndarray:   # bins (-inf, 1], (1, 2], (2, inf), then absent (0)
        return np.array([np.mean(v == 1), np.mean(v == 2), np.mean(v == 3), np.mean(v == 0)])

    assert binned_ks(binned(x), binned(y)) == pytest.approx(ks_2samp(x, y).statistic, abs=1e-12)


def window(rows: int, label_rate: float, missing: int = 0, unseen: int | None = None,
           counts: list[int] | None = None) -> dict[str, Any]:
    counts = counts or [rows // 4, rows // 4]
    return {"rows": rows, "label_rate": label_rate, "missing_ids": {"userId": missing}, "dropped": {},
            "rows_with_unseen_features": unseen,
            "features": {"f\tt": {"present": sum(counts), "cuts": [1.0], "counts": counts}},
            "at_reference_cuts": {"f\tt": {"present": sum(counts), "counts": counts}}}


def test_judge_names_each_violation() -> None:
    from glmix.registry.data_gate import ProductionData

    settings = DataGateSettings()
    reference = ProductionData(3, window(1000, 0.30), "features/")
    same = judge(reference, window(1100, 0.32, missing=5, unseen=20), settings)
    assert same["passed"] and same["verdict"] == "passed [against production version 3]"
    bad = judge(reference, window(300, 0.55, missing=30, unseen=200, counts=[10, 280]), settings)
    assert not bad["passed"]
    failed = {c["check"] for c in bad["checks"] if not c["passed"]}
    assert failed == {"missing userId", "row count change", "label rate change", "feature PSI (largest)",
                      "rows with unseen features"}
    assert "over the threshold: f t" in bad["verdict"] and "300 rows against 1,000 (-70.0%)" in bad["verdict"]
    first = judge(ProductionData(None, None, None), window(300, 0.55, missing=1), settings)
    assert first["passed"] and [c["check"] for c in first["checks"]] == ["missing userId"]
    assert first["verdict"] == "passed [against no production version (only absolute checks)]"


def _rewrite(source: Path, target: Path, change: Any) -> None:
    """A copy of an Avro directory with each record changed by ``change(n, record)``."""
    target.mkdir(parents=True)
    for part in sorted(source.glob("*.avro")):
        with open(part, "rb") as stream:
            reader = fastavro.reader(stream)
            schema, records = reader.writer_schema, list(reader)
        with open(target / part.name, "wb") as out:
            fastavro.writer(out, schema, [change(n, r) for n, r in enumerate(records)])


def _records(directory: Path) -> list[dict[str, Any]]:
    out = []
    for part in sorted(directory.glob("*.avro")):
        with open(part, "rb") as stream:
            out += list(fastavro.reader(stream))
    return out


@pytest.fixture(scope="module")
def photon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photon_dataset(tmp_path_factory.mktemp("gate") / "data", rows=3000, seed=4, variant="null",
                                names=RENAMED)


def args(data: Path, output: Path, registry: str, **gate: Any) -> DataGateArgs:
    return DataGateArgs(input=str(data), output=str(output), bags=["features", "movieFeatures"],
                        entity_fields=["movieId"], registry=registry, model="m", task="logistic",
                        columns={"response": "response", **RENAMED}, gate=DataGateSettings(features=8, **gate))


def test_data_gate_job_on_photon_files(photon: Path, tmp_path: Path, spark) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    # no production version yet: statistics only (checked against the records themselves)
    first = data_gate.run(spark, args(photon / "train", tmp_path / "day1", registry.root))
    assert first["passed"]
    stats = json.loads((tmp_path / "day1" / "stats.json").read_text())
    records = _records(photon / "train")
    assert stats["rows"] == len(records) and stats["missing_ids"] == {"movieId": 0}
    assert stats["label_rate"] == pytest.approx(np.mean([float(r["response"]) for r in records]))
    assert len(stats["features"]) == 8 and (tmp_path / "day1" / "_SUCCESS").exists()
    key, feature = next(iter(stats["features"].items()))
    name, term = key.split("\t")
    values = []   # a repeated (name, term) in a row counts once, its values summed
    for r in records:
        found = [i["value"] for bag in ("features", "movieFeatures") for i in r[bag]
                 if i["name"] == name and (i["term"] or "") == term]
        if found:
            values.append(sum(found))
    assert feature["present"] == len(values) == sum(feature["counts"])
    bins = [sum(c < v for c in feature["cuts"]) for v in values]   # (-inf, c0], (c0, c1], ..., (c_last, inf)
    assert feature["counts"] == np.bincount(bins, minlength=len(feature["cuts"]) + 1).tolist()

    # that window as production's, with its feature list
    features = sorted({(i["name"], i["term"] or "") for r in records for bag in ("features", "movieFeatures")
                       for i in r[bag]})

    def fill(tmp: str) -> dict[str, Any]:
        (Path(tmp) / "features").mkdir()
        (Path(tmp) / "features" / "all.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in features))
        (Path(tmp) / "data-stats.json").write_bytes((tmp_path / "day1" / "stats.json").read_bytes())
        return {}

    registry.promote("m", registry.register("m", fill).number)
    assert production_data(registry, "m").stats == stats

    # the next day's rows (the validation split, a quarter of the size): passes every other check
    second = data_gate.run(spark, args(photon / "validation", tmp_path / "day2", registry.root, row_change=0.8))
    assert second["passed"], second["verdict"]
    decision = json.loads((tmp_path / "day2" / "data-gate.json").read_text())
    assert {c["check"] for c in decision["checks"]} >= {"row count change", "label rate change",
                                                        "feature PSI (largest)", "rows with unseen features"}

    # a drifted day (gated at PSI 0.1, "a moderate shift": the feature is on a sixth of the rows, so
    # values that all moved reach ~0.18): the most frequent feature's values tripled, movieId lost on
    # a fifth of the rows, a new feature on every fourth row
    def drift(n: int, r: dict[str, Any]) -> dict[str, Any]:
        for bag in ("features", "movieFeatures"):
            r[bag] = [dict(i, value=i["value"] * 3 + 1) if i["name"] == name and (i["term"] or "") == term else i
                      for i in r[bag]]
        if n % 5 == 0:
            r["meta"] = None
        if n % 4 == 0:
            r["features"] = [*r["features"], {"name": "brand-new", "term": None, "value": 1.0}]
        return r

    _rewrite(photon / "train", tmp_path / "drifted", drift)
    with pytest.raises(GlmixError, match=rf"data gate failed: missing movieId 0.2\d* > 0.01 .*feature PSI \(largest\)"
                                         rf" .* > 0.1 \(over the threshold: {name} {term}.*rows with unseen features 0.25\d* "
                                         r".*\[against production version 1\]; report .*day3/index.html"):
        data_gate.run(spark, args(tmp_path / "drifted", tmp_path / "day3", registry.root, psi=0.1))
    page = (tmp_path / "day3" / "index.html").read_text()   # published although the gate failed
    assert "<img src=\"data:image/png;base64," in page and f"{name} {term}" in page
    assert data_gate.run(spark, args(tmp_path / "drifted", tmp_path / "day3w", registry.root, psi=0.1, action="warn"))[
        "passed"] is False


def test_data_gate_in_the_flow_needs_a_registry(tmp_path: Path) -> None:
    base = {"name": "g", "task": "logistic", "input": {"train": "t", "validation": "v"}, "output": str(tmp_path / "o"),
            "feature_shards": [{"name": "s", "bags": ["features"]}],
            "coordinates": {"global": {"type": "fixed", "shard": "s", "compute": "scipy"},
                            "per-user": {"type": "random", "shard": "s", "entity_field": "userId"}},
            "update_sequence": ["global", "per-user"], "data_gate": {"psi": 0.1}}
    with pytest.raises(ConfigError, match="data_gate: .* needs a registry section"):
        GameConfig.from_dict(base)
    config = GameConfig.from_dict({**base, "registry": {"root": str(tmp_path / "r")}})
    flow = read_project(build_project(config, tmp_path / "p"))
    nodes = {n.name: n for n in flow.nodes}
    assert flow.nodes[0].name == "data-gate" and nodes["index"].depends_on == ["data-gate"]
    command = nodes["data-gate"].command
    assert "jobs/data_gate.py" in command and "--entity-fields userId" in command and '"psi":0.1' in command
