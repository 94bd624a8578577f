"""Serving (issue 23): the bundle export, the online scorer's parity with the Spark scoring job, and
the scoring service over real HTTP.

The model and data are Photon-shaped (a Photon ML GAME model directory imported, Avro written by
Apache avro with null uids, int user ids, movie ids in metadataMap, repeated features, null
offsets beside set ones), with three coordinates: global, per-user, per-movie."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from glmix.errors import ConfigError, DataError
from glmix.io.avro import read_avro_records
from glmix.io.examples import ColumnNames
from glmix.io.storage import copy_tree, storage_for
from glmix.model.game_model import read_game_model
from glmix.model.linear_model import read_models
from glmix.model.photon_model import import_photon_model
from glmix.registry import ModelRegistry
from glmix.registry.store import RegistryError
from glmix.serving import OnlineScorer, check_parity, read_manifest
from glmix.serving.entity_store import shard_of
from glmix.serving.export import ExportArgs, export_bundle
from glmix.settings import FeatureShard
from glmix.spark.scoring import score
from tests.photon_data import (
    BAGS,
    photon_model_record,
    write_photon_dataset,
    write_photon_model,
    write_photon_model_file,
)

COLUMNS = ColumnNames(response="response")


def _photon_game_model(data: Path, target: Path) -> Path:
    """Photon's model directory with a third coordinate, per-movie (ids from metadataMap)."""
    photon = write_photon_model(data / "_synthetic" / "truth", target)
    movies = [photon_model_record(m.model_id, m.means, None)
              for m in read_models(str(data / "_synthetic" / "truth" / "random-effect" / "movieId"))]
    write_photon_model_file(photon / "random-effect" / "per-movie" / "coefficients" / "part-00000.avro",
                            [m for k, m in enumerate(movies) if k % 5])    # a fifth of the movies have no model
    (photon / "random-effect" / "per-movie" / "id-info").write_text("movieId\nmovieShard\n")
    return photon


@pytest.fixture(scope="module")
def served(spark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serving")
    data = write_photon_dataset(root / "data", rows=3000, seed=11, variant="null", offsets=True)
    photon = _photon_game_model(data, root / "photon")
    shards = [FeatureShard(name="globalShard", bags=BAGS), FeatureShard(name="userShard", bags=("movieFeatures",)),
              FeatureShard(name="movieShard", bags=("userFeatures",))]
    import_photon_model(str(photon), str(root / "model"), shards)
    score(spark, {"validation": str(data / "validation")}, read_game_model(str(root / "model"))[0],
          str(root / "scores"), columns=COLUMNS)
    report = export_bundle(spark, ExportArgs(model=str(root / "model"), output=str(root / "bundle"), shards=3))
    assert report["coordinates"]["per-user"]["entities"] > 50
    return {"root": root, "data": data, "model": root / "model", "scores": root / "scores" / "validation",
            "bundle": root / "bundle"}


def test_bundle_layout_manifest_and_shards(served: dict[str, Path]) -> None:
    bundle = served["bundle"]
    manifest = read_manifest(str(bundle))
    assert (bundle / "_SUCCESS").exists() and manifest.model == str(served["model"])
    kinds = {c.name: (c.type, c.entity_field, c.bags, c.shards) for c in manifest.coordinates}
    assert kinds == {"global": ("fixed", None, BAGS, 0), "per-user": ("random", "userId", ("movieFeatures",), 3),
                     "per-movie": ("random", "movieId", ("userFeatures",), 3)}
    assert sorted(manifest.files) == sorted(
        ["coordinates/global/fixed.arrow", "coordinates/per-user/features.arrow",
         "coordinates/per-movie/features.arrow"] + [f"coordinates/{c}/shard-0000{k}.lmdb"
                                                    for c in ("per-user", "per-movie") for k in range(3)])
    # every entity is in the shard the scorer will look in, and the counts add up
    users = {m.model_id: m.means for m in read_models(str(served["model"] / "random-effect" / "per-user" / "coefficients"))}
    scorer = OnlineScorer(str(bundle))
    try:
        store = scorer._random["per-user"].store
        assert len(store) == len(users) == next(c.entities for c in manifest.coordinates if c.name == "per-user")
        some = sorted(users)[:20]
        assert {shard_of(u, 3) for u in users} == {0, 1, 2}
        for user in some:
            indices, values = store.get(user)   # type: ignore[misc]
            index = scorer._random["per-user"].index
            names = {v: k for k, v in index.items()}
            assert {names[i]: v for i, v in zip(indices.tolist(), values.tolist(), strict=True)} == users[user]
    finally:
        scorer.close()


def test_online_scores_equal_the_spark_scoring_job(served: dict[str, Path]) -> None:
    report = check_parity(str(served["bundle"]), str(served["data"] / "validation"), str(served["scores"]),
                          COLUMNS)
    assert report.passed, report.to_dict()
    rows = sum(1 for _ in read_avro_records(str(served["scores"])))
    assert report.rows == rows > 500 and report.max_abs_difference < 1e-9
    assert report.coordinates_without_model.get("per-movie", 0) > 0    # the movies left out of the model score 0


def test_the_parity_check_catches_a_different_model(served: dict[str, Path], tmp_path: Path) -> None:
    altered = tmp_path / "model"
    shutil.copytree(served["model"], altered)
    coefficients = altered / "fixed-effect" / "global" / "coefficients"
    [fixed] = list(read_models(str(coefficients)))
    write_photon_model_file(next(coefficients.glob("*.avro")), [photon_model_record(
        "fixed-effect", {k: v + (1e-6 if k == ("(INTERCEPT)", "") else 0.0) for k, v in fixed.means.items()}, None)])
    from glmix.spark.session import session
    export_bundle(session(), ExportArgs(model=str(altered), output=str(tmp_path / "bundle"), shards=2))
    report = check_parity(str(tmp_path / "bundle"), str(served["data"] / "validation"), str(served["scores"]),
                          COLUMNS)
    assert not report.passed and report.over_tolerance == report.rows
    assert report.max_abs_difference == pytest.approx(1e-6, rel=1e-3)


def test_scorer_semantics_unknown_features_missing_entities_and_ids(served: dict[str, Path]) -> None:
    scorer = OnlineScorer(str(served["bundle"]))
    try:
        base = scorer.score({}, {})
        assert set(base.without_model) == {"per-user", "per-movie"}
        assert base.coordinates["per-user"] == base.coordinates["per-movie"] == 0.0
        assert base.score == base.coordinates["global"]    # the global intercept
        user = sorted(read_models(str(served["model"] / "random-effect" / "per-user" / "coefficients")),
                      key=lambda m: m.model_id)[0]
        (name, term), coefficient = next((k, v) for k, v in user.means.items() if k[0] != "(INTERCEPT)")
        features = {"movieFeatures": [(name, term or None, 2.0), ("never-seen", "x", 5.0)]}
        as_int = scorer.score(features, {"userId": int(user.model_id)}, offset=0.5)
        assert as_int.coordinates["per-user"] == pytest.approx(user.means[("(INTERCEPT)", "")] + 2.0 * coefficient)
        assert as_int.unknown_features["per-user"] == 1 and as_int.without_model == ("per-movie",)
        assert scorer.score(features, {"userId": user.model_id}, offset=0.5) == as_int     # 7 and "7": one id
        assert 0 < as_int.mean < 1 and scorer.unknown_features["per-user"] >= 1    # type: ignore[operator]
    finally:
        scorer.close()


def test_a_bundle_whose_file_changed_is_refused(served: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(served["bundle"], copy)
    with open(copy / "coordinates" / "per-user" / "shard-00001.lmdb", "r+b") as stream:
        stream.seek(100)
        stream.write(b"\xff")
    with pytest.raises(ConfigError, match=r"coordinates/per-user/shard-00001.lmdb does not match the manifest"):
        OnlineScorer(str(copy))
    (copy / "_SUCCESS").unlink()
    with pytest.raises(ConfigError, match="not a published serving bundle"):
        OnlineScorer(str(copy))


def test_a_registry_version_exports_as_the_model_it_holds(served: dict[str, Path], tmp_path: Path, spark) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    registry.register_model_dir("movies", str(served["model"]), {"task": "logistic"}, {})
    second = registry.register_model_dir("movies", str(served["model"]), {"task": "logistic"}, {})
    with pytest.raises(RegistryError, match="no production version"):
        export_bundle(spark, ExportArgs(registry=registry.root, name="movies", output=str(tmp_path / "b")))
    registry.promote("movies", second.number)
    export_bundle(spark, ExportArgs(registry=registry.root, name="movies", output=str(tmp_path / "b"), shards=3))
    manifest = read_manifest(str(tmp_path / "b"))
    assert manifest.version == 2 and manifest.model == f"{registry.root}#movies:2"
    assert manifest.files == read_manifest(str(served["bundle"])).files     # the same files, byte for byte
    with pytest.raises(ValueError, match="give either --model or --registry"):
        ExportArgs(output="x")


def test_an_entity_with_two_models_is_a_one_line_error(served: dict[str, Path], tmp_path: Path, spark) -> None:
    model = tmp_path / "model"
    shutil.copytree(served["model"], model)
    coefficients = model / "random-effect" / "per-user" / "coefficients"
    first = next(read_models(str(coefficients)))
    write_photon_model_file(coefficients / "part-00009.avro", [photon_model_record(first.model_id, first.means, None)])
    with pytest.raises(DataError, match=rf"per-user/coefficients: field 'modelId': entity '{first.model_id}' has two models"):
        export_bundle(spark, ExportArgs(model=str(model), output=str(tmp_path / "bundle"), shards=2))
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".*bundle*"))


def test_a_model_with_a_scores_coordinate_cannot_be_exported(tmp_path: Path, spark) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model-metadata.json").write_text(json.dumps({"coordinates": {"deep": {"type": "scores"}}}))
    with pytest.raises(ConfigError, match="coordinate deep is given by its scores"):
        export_bundle(spark, ExportArgs(model=str(model), output=str(tmp_path / "bundle")))
    assert not (tmp_path / "bundle").exists()


# ------------------------------------------------------------------ the scoring service, over HTTP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(served: dict[str, Path]) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "glmix.cli", "serve", str(served["bundle"]), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _requests_of(served: dict[str, Path], n: int) -> tuple[list[dict], list[float]]:
    """The first ``n`` validation rows as service requests, with the Spark job's scores."""
    from glmix.io.examples import ExampleReader
    expected = {r["uid"]: r["predictionScore"] for r in read_avro_records(str(served["scores"]))}
    reader = ExampleReader(COLUMNS, BAGS, ("userId", "movieId"))
    first = sorted((served["data"] / "validation").glob("part-0*.avro"))[0]
    out, want = [], []
    for k, example in enumerate(reader.read(str(first))):
        if k == n:
            break
        out.append({"uid": f"{first.name}#{k}", "offset": example.offset, "ids": example.ids,
                    "features": {b: [{"name": n_, "term": t, "value": v} for n_, t, v in items]
                                 for b, items in example.bags.items()}})
        want.append(expected[f"{first.name}#{k}"])
    return out, want


def test_service_scores_single_and_batch_as_the_spark_job(service: str, served: dict[str, Path]) -> None:
    batch, want = _requests_of(served, 40)
    one = requests.post(f"{service}/score", json=batch[0], timeout=10)
    assert one.status_code == 200 and one.json()["score"] == pytest.approx(want[0], abs=1e-9)
    assert one.json()["uid"] == batch[0]["uid"] and set(one.json()["coordinates"]) == {"global", "per-user", "per-movie"}
    many = requests.post(f"{service}/score", json={"requests": batch}, timeout=10).json()["results"]
    assert [r["score"] for r in many] == pytest.approx(want, abs=1e-9)
    model = requests.get(f"{service}/model", timeout=10).json()
    assert model["model"] == str(served["model"]) and model["requests"] >= 41
    assert sorted(c["name"] for c in model["coordinates"]) == ["global", "per-movie", "per-user"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"features": {"features": [{"name": "a", "value": "high"}]}}, 422, "features.features.0.value: Input should be a valid number"),
    ({"features": {"features": [{"term": "a", "value": 1}]}}, 422, "features.features.0.name: Field required"),
    ({"requests": [{}, {"offset": "x"}]}, 422, "requests.1.offset: Input should be a valid number"),
    ({"feature": {}}, 422, "feature: Extra inputs are not permitted"),
])
def test_a_bad_request_gets_a_4xx_naming_the_field(service: str, body: dict, status: int, message: str) -> None:
    response = requests.post(f"{service}/score", json=body, timeout=10)
    assert response.status_code == status and response.json()["error"].startswith(message), response.text
    assert requests.post(f"{service}/score", data=b"{not json", timeout=10).status_code == 422


def test_switching_bundles_under_load_fails_no_request(service: str, served: dict[str, Path], tmp_path: Path,
                                                       spark) -> None:
    second = tmp_path / "bundle-2"
    export_bundle(spark, ExportArgs(model=str(served["model"]), output=str(second), shards=2))
    batch, want = _requests_of(served, 5)
    failures, done, stop = [], [0], threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(f"{service}/score", json={"requests": batch}, timeout=30)
                if response.status_code != 200 or [r["score"] for r in response.json()["results"]] != pytest.approx(want, abs=1e-9):
                    failures.append(response.text)
                done[0] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        for bundle in (second, served["bundle"], second):
            switched = requests.post(f"{service}/model", json={"bundle": str(bundle)}, timeout=60)
            assert switched.status_code == 200, switched.text
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures and done[0] > 20
    assert requests.get(f"{service}/model", timeout=10).json()["bundle"] == str(second)
    refused = requests.post(f"{service}/model", json={"bundle": str(tmp_path / "nothing")}, timeout=10)
    assert refused.status_code == 400 and "not a published serving bundle" in refused.json()["error"]
    requests.post(f"{service}/model", json={"bundle": str(served["bundle"])}, timeout=60)


@pytest.mark.integration
def test_a_bundle_on_hdfs_is_built_from_a_model_on_hdfs_and_copied_once(hdfs_root: str, served: dict[str, Path],
                                                                        spark, tmp_path: Path) -> None:
    # (the cluster first: the Spark session then reads hdfs:/// paths with the cluster's configuration)
    copy_tree(str(served["model"]), f"{hdfs_root}/model")
    export_bundle(spark, ExportArgs(model=f"{hdfs_root}/model", output=f"{hdfs_root}/bundle", shards=3))
    assert storage_for(hdfs_root).exists(f"{hdfs_root}/bundle/_SUCCESS")
    remote = OnlineScorer(f"{hdfs_root}/bundle", cache=tmp_path / "cache")
    local = OnlineScorer(str(served["bundle"]))
    try:
        [copied] = [p for p in (tmp_path / "cache").iterdir()]
        assert (copied / "_SUCCESS").exists() and not list((tmp_path / "cache").glob("*.partial"))
        batch, want = _requests_of(served, 30)
        for request, expected in zip(batch, want, strict=True):
            features = {b: [(f["name"], f["term"], f["value"]) for f in items] for b, items in request["features"].items()}
            got = remote.score(features, request["ids"], request["offset"])
            assert got == local.score(features, request["ids"], request["offset"])
            assert got.score == pytest.approx(expected, abs=1e-9)
        again = OnlineScorer(f"{hdfs_root}/bundle", cache=tmp_path / "cache")     # the same copy, not a second
        assert [p.name for p in (tmp_path / "cache").iterdir()] == [copied.name]
        again.close()
    finally:
        remote.close()
        local.close()
