"""Files other systems wrote: Photon-ML-shaped data (no uids, uids of any type, duplicates, empty
files) read by the stages, and degenerate inputs ending in one-line errors. A whole GAME flow on
such data runs locally and on the dev cluster in test_game_yarn.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glmix.errors import ConfigError, DataError
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.io.avro import read_avro_records
from glmix.io.dated import DatedDays, DateRange
from glmix.io.examples import ColumnNames, ExampleReader
from glmix.io.scores import offsets_for
from glmix.model.game_model import read_game_model
from glmix.model.linear_model import read_models
from glmix.model.photon_model import import_photon_model
from glmix.model.summary import model_summary
from glmix.settings import FeatureShard
from glmix.spark import input as spark_input
from glmix.spark.input import InputSpec, load_examples, read_scores
from glmix.spark.scoring import score
from jobs.index_features import index_features
from jobs.partition_random_effect import partition_random_effect
from tests.photon_data import BAGS, write_parquet_copy, write_photon_dataset, write_photon_model


def labels_by_position(directory: Path) -> dict[str, float]:
    """What row numbering must give: ``<file>#<record>`` -> the record's label, read with fastavro."""
    found = {}
    for path in sorted(directory.glob("*.avro")):
        with open(path, "rb") as stream:
            for k, record in enumerate(fastavro.reader(stream)):
                found[f"{path.name}#{k}"] = float(record["response"])
    return found


@pytest.fixture(scope="module")
def photon_variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("photon")
    return {v: write_photon_dataset(root / v, rows=600, seed=5, variant=v) / "train"
            for v in ("null", "absent", "int", "long", "string", "duplicates")}


def uids_and_labels(spark, directory: Path, uid: str | None = "uid") -> dict[str, float]:
    loaded = load_examples(spark, InputSpec(uri=str(directory), bags=BAGS,
                                            columns=ColumnNames(response="response", uid=uid)))
    rows = loaded.frame.select("uid", "label").collect()
    assert len({r["uid"] for r in rows}) == len(rows), "every row has its own uid"
    return {r["uid"]: r["label"] for r in rows}


@pytest.mark.parametrize("variant", ["null", "absent"])
def test_rows_without_a_uid_are_numbered_by_file_and_record(spark, photon_variants: dict[str, Path],
                                                           variant: str) -> None:
    assert uids_and_labels(spark, photon_variants[variant]) == labels_by_position(photon_variants[variant])


@pytest.mark.parametrize("variant, first", [("int", "0"), ("long", str(2**40)), ("string", "row-0")])
def test_given_uids_of_any_type_are_kept_as_strings(spark, photon_variants: dict[str, Path], variant: str,
                                                    first: str) -> None:
    assert first in uids_and_labels(spark, photon_variants[variant])


def test_uid_null_in_the_config_numbers_rows_even_where_uids_are_given(spark, photon_variants: dict[str, Path]) -> None:
    directory = photon_variants["duplicates"]
    assert uids_and_labels(spark, directory, uid=None) == labels_by_position(directory)


def test_numbering_past_a_split_is_the_same_in_every_read(spark, photon_variants: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spark_input, "NUMBERED_SPLIT_BYTES", (8192, 8192))   # several splits per file
    first = uids_and_labels(spark, photon_variants["null"])
    assert any("@" in uid for uid in first)
    assert uids_and_labels(spark, photon_variants["null"]) == first
    assert len(first) == len(labels_by_position(photon_variants["null"]))


def test_duplicate_uids_fail_the_join_naming_the_uid(spark, photon_variants: dict[str, Path],
                                                     tmp_path: Path) -> None:
    loaded = load_examples(spark, InputSpec(uri=str(photon_variants["duplicates"]), bags=BAGS,
                                            columns=ColumnNames(response="response")))
    uids = [r["uid"] for r in loaded.frame.select("uid").collect()]
    scores = tmp_path / "scores" / "part-0.parquet"
    scores.parent.mkdir()
    pq.write_table(pa.table({"uid": uids, "score": [0.0] * len(uids)}), scores)
    message = r"uid 'row-\d+' is on 2 rows .* uids must be unique in a dataset"
    with pytest.raises(DataError, match=message):
        read_scores(spark, str(scores.parent))
    with pytest.raises(DataError, match=message):
        offsets_for(pa.array(uids).to_numpy(zero_copy_only=False), [str(scores.parent)])


def test_empty_and_degenerate_inputs_get_one_line_errors(spark, photon_variants: dict[str, Path],
                                                         tmp_path: Path) -> None:
    spec = {"bags": BAGS, "columns": ColumnNames(response="response")}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no \.avro or \.parquet data files \(empty files aside\)"):
        load_examples(spark, InputSpec(uri=str(empty), **spec))
    (empty / "part-0.avro").write_bytes(b"")       # a zero-byte file is no data file
    with pytest.raises(DataError, match=r"no \.avro or \.parquet data files"):
        load_examples(spark, InputSpec(uri=str(empty), **spec))
    (empty / "part-1.avro").write_bytes((photon_variants["null"] / "part-99999.avro").read_bytes())  # header only
    loaded = load_examples(spark, InputSpec(uri=str(empty), **spec))
    loaded.frame.count()
    with pytest.raises(DataError, match=r"empty: no rows: its 1 data file\(s\) hold no records"):
        loaded.check()

    data, index = str(photon_variants["null"]), str(tmp_path / "index")
    index_features(spark, data, index, FeatureShard(name="m", bags=("movieFeatures",)), columns=spec["columns"])
    with pytest.raises(DataError, match=r"field 'userId': no userId has 100000 or more rows \(the lower bound\)"):
        partition_random_effect(spark, data, "userId", index, str(tmp_path / "re"), columns=spec["columns"],
                                lower_bound=100000)
    assert not (tmp_path / "re").exists()


def two_coordinates(data: Path, output: Path, dates: dict) -> dict:
    """A fixed effect and a per-user random effect on a dated Photon-shaped input."""
    return {
        "name": "dated", "task": "logistic", "output": str(output),
        "input": {"train": str(data), "validation": str(data), **dates}, "columns": {"response": "response"},
        "feature_shards": [{"name": "global", "bags": list(BAGS)}, {"name": "movie", "bags": ["movieFeatures"]}],
        "coordinates": {"global": {"type": "fixed", "shard": "global", "compute": "scipy"},   # the input is the subject
                        "per-user": {"type": "random", "shard": "movie", "entity_field": "userId"}},
        "update_sequence": ["global", "per-user"], "evaluators": ["AUC"],
        "resources": {"spark": {"partitions": 2}}, "flow": {"retries": 0}}


def test_dated_parquet_input_runs_through_a_game_flow(tmp_path: Path) -> None:
    """The TrainingExample shape as Parquet (detected from the files) laid out by day: training on
    the last two days before the run date, validating on the run date's day. Every stage reads it,
    rows are numbered by their index in the file."""
    avro = write_photon_dataset(tmp_path / "avro", rows=2000, seed=4, variant="null")
    data = tmp_path / "events"
    write_parquet_copy(avro / "train", tmp_path / "train")
    for k, part in enumerate(sorted((tmp_path / "train").glob("*.parquet"))):
        day = data / "daily" / "2026" / "11" / f"{1 + k % 2:02d}"
        day.mkdir(parents=True, exist_ok=True)
        part.rename(day / part.name)
    write_parquet_copy(avro / "validation", data / "daily" / "2026" / "11" / "03")
    config = GameConfig.from_dict(two_coordinates(data, tmp_path / "out", {
        "train_dates": {"last_days": 2}, "validation_dates": {"start": "2026-11-03", "end": "2026-11-03"}}))
    project = build_project(config, tmp_path / "project")
    results = LocalRunner(project, overrides={"glmix.run.date": "2026-11-03"}).run()
    assert [r.name for r in results if r.status != "succeeded"] == []
    steps = json.loads((tmp_path / "out" / "summary.json").read_text())["steps"]
    assert 0.6 < steps[0]["metrics"]["AUC"] < steps[1]["metrics"]["AUC"]
    uids = pq.read_table(tmp_path / "out" / "run-0" / "pass-0" / "global" / "scores" / "train").column("uid")
    assert "daily/2026/11/02/part-00001.parquet#0" in uids.to_pylist()
    report = json.loads((tmp_path / "out" / "prepared" / "global" / "validation" / "_report.json").read_text())
    assert report["rows_in"] == pq.read_table(data / "daily" / "2026" / "11" / "03").num_rows


def test_date_ranges_name_missing_days(tmp_path: Path) -> None:
    for day in ("01", "03"):
        (tmp_path / "daily" / "2026" / "11" / day).mkdir(parents=True)
    root = str(tmp_path)
    days = DateRange(start=date(2026, 11, 1), end=date(2026, 11, 3))
    with pytest.raises(DataError, match=r"1 day\(s\) of 2026-11-01..2026-11-03 missing, first 2026-11-02 .*allow_gaps"):
        DatedDays(days).directories(root)
    gaps = days.model_copy(update={"allow_gaps": True})
    assert [d[-10:] for d in DatedDays(gaps).directories(root)] == ["2026/11/01", "2026/11/03"]
    last = DateRange(last_days=3, allow_gaps=True)
    assert [d[-10:] for d in DatedDays(last, date(2026, 11, 4)).directories(root)] == ["2026/11/01", "2026/11/03"]
    with pytest.raises(DataError, match="no day of 2026-11-10..2026-11-11 present"):
        DatedDays(DateRange(last_days=2, allow_gaps=True), date(2026, 11, 12)).directories(root)
    with pytest.raises(ConfigError, match="input.train_dates: Value error, give start and end, or last_days"):
        GameConfig.from_dict(two_coordinates(tmp_path, tmp_path / "out", {"train_dates": {"start": "2026-11-01"}}))


def test_a_bad_parquet_row_is_named_by_file_record_and_field(spark, tmp_path: Path) -> None:
    rows = [{"uid": f"r{k}", "response": 1.0 if k != 5 else 7.0,
             "features": [{"name": "a", "term": "", "value": 1.0}]} for k in range(10)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part-0.parquet")
    loaded = load_examples(spark, InputSpec(uri=str(tmp_path / "data"), bags=("features",), task="logistic",
                                            columns=ColumnNames(response="response")))
    loaded.frame.count()
    with pytest.raises(DataError, match=r"part-0\.parquet: record 5: field 'response': invalid label"):
        loaded.check()


def test_a_photon_model_directory_scores_warm_starts_and_goes_back(spark, tmp_path: Path) -> None:
    data = write_photon_dataset(tmp_path / "data", rows=1500, seed=6, variant="null")
    photon = write_photon_model(data / "_synthetic" / "truth", tmp_path / "photon-model")
    coefficients = photon / "fixed-effect" / "global" / "coefficients"
    with pytest.raises(Exception, match="must match schema type"):   # what current readers make of it
        fastavro.reader(open(coefficients / "part-00000.avro", "rb"))
    shards = [FeatureShard(name="globalShard", bags=BAGS), FeatureShard(name="userShard", bags=("movieFeatures",))]
    models = import_photon_model(str(photon), str(tmp_path / "glmix-model"), shards)
    assert [(m.name, m.type, m.entity_field) for m in models] == [("global", "fixed", None),
                                                                   ("per-user", "random", "userId")]

    # scoring: the Spark job's score is the true margin, computed here by hand
    columns = ColumnNames(response="response")
    score(spark, {"validation": str(data / "validation")}, read_game_model(str(tmp_path / "glmix-model"))[0],
          str(tmp_path / "scores"), columns=columns)
    scored = {r["uid"]: r["predictionScore"] for r in read_avro_records(str(tmp_path / "scores" / "validation"))}
    fixed = next(read_models(str(coefficients))).means
    users = {m.model_id: m.means for m in read_models(str(photon / "random-effect" / "per-user" / "coefficients"))}
    reader = ExampleReader(columns, bags=BAGS, entity_fields=("userId",))
    files = sorted((data / "validation").glob("part-0000*.avro"))
    for k, example in enumerate(reader.read(str(files[0]))):
        margin = fixed[("(INTERCEPT)", "")] + sum(fixed[(n, t)] * v for b in example.bags.values() for n, t, v in b)
        user = users.get(example.ids["userId"], {})
        margin += user.get(("(INTERCEPT)", ""), 0.0) + sum(user.get((n, t), 0.0) * v
                                                           for n, t, v in example.bags["movieFeatures"])
        assert scored[f"{files[0].name}#{k}"] == pytest.approx(margin, abs=1e-9)

    # warm start and incremental prior read the coefficients (variances too) by feature name
    imported = next(read_models(str(tmp_path / "glmix-model" / "fixed-effect" / "global" / "coefficients")))
    assert imported.means == fixed and set(imported.variances.values()) == {0.01}
    # its summary: Photon's variances are the standard errors' squares; no training report to read
    summary = model_summary(str(tmp_path / "glmix-model"))
    [fixed_summary] = summary.fixed_effects
    assert [c.std_error for c in fixed_summary.coefficients] == pytest.approx([0.1] * len(fixed)) and fixed_summary.rows is None
    assert summary.random_effects[0].entities == len(users) and summary.random_effects[0].rows is None

    # back to Photon ML: the published model carries what Photon's loader reads
    metadata = json.loads((tmp_path / "glmix-model" / "model-metadata.json").read_text())
    assert metadata["modelType"] == "LOGISTIC_REGRESSION"
    assert (tmp_path / "glmix-model" / "random-effect" / "per-user" / "id-info").read_text() == "userId\nuserShard\n"
    again = import_photon_model(str(tmp_path / "glmix-model"), str(tmp_path / "round-trip"), shards)
    assert [m.name for m in again] == ["global", "per-user"]
    with pytest.raises(DataError, match=r"coordinate per-user uses feature shard 'userShard'; the config defines"):
        import_photon_model(str(photon), str(tmp_path / "nope"), shards[:1])
    assert not (tmp_path / "nope").exists()
