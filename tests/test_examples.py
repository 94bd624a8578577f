"""Reading Photon-style data written by another Avro implementation (Apache `avro`), and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import avro.datafile
import avro.io
import avro.schema
import pytest

from glmix.errors import DataError
from glmix.io.examples import ColumnNames, ExampleReader, ReadStats, merge_duplicates

FEATURE = {"type": "record", "name": "FeatureAvro", "fields": [
    {"name": "name", "type": "string"}, {"name": "term", "type": "string"}, {"name": "value", "type": "double"}]}


def write_with_apache_avro(path: Path, fields: list[dict], records: list[dict]) -> str:
    schema = avro.schema.parse(json.dumps({"type": "record", "name": "PhotonStyle", "namespace": "test",
                                           "fields": fields}))
    with open(path, "wb") as out:
        writer = avro.datafile.DataFileWriter(out, avro.io.DatumWriter(), schema)
        for record in records:
            writer.append(record)
        writer.close()
    return str(path)


PHOTON_FIELDS = [
    {"name": "uid", "type": ["string", "long", "int"]},
    {"name": "response", "type": ["double", "float", "int", "long", "boolean", "string"]},
    {"name": "features", "type": {"type": "array", "items": FEATURE}},
    {"name": "songFeatures", "type": {"type": "array", "items": "FeatureAvro"}},
    {"name": "userId", "type": "int"},
    {"name": "metadataMap", "type": ["null", {"type": "map", "values": "string"}]},
    {"name": "weight", "type": ["null", "double"]},
]


def photon_records() -> list[dict]:
    f = lambda n, t, v: {"name": n, "term": t, "value": v}  # noqa: E731
    return [
        {"uid": 11, "response": 1, "features": [f("a", "", 1.0), f("a", "", 2.0), f("b", "x", 0.5)],
         "songFeatures": [], "userId": 7, "metadataMap": {"songId": "s1"}, "weight": None},
        {"uid": "r2", "response": True, "features": [], "songFeatures": [f("genre", "rock", 1.0)],
         "userId": 8, "metadataMap": {"songId": "42"}, "weight": 3.0},
        {"uid": 13, "response": "0", "features": [f("b", "x", 1.0)], "songFeatures": [], "userId": 9,
         "metadataMap": {"songId": "s3"}, "weight": None},
        {"uid": 14, "response": 0.0, "features": [], "songFeatures": [], "userId": 7,
         "metadataMap": {"songId": "s1"}, "weight": 0.5},
    ]


def test_photon_variations(tmp_path: Path) -> None:
    path = write_with_apache_avro(tmp_path / "part-0.avro", PHOTON_FIELDS, photon_records())
    reader = ExampleReader(bags=("features", "songFeatures"), entity_fields=("userId", "songId"))
    stats = ReadStats()
    examples = list(reader.read(str(tmp_path), stats))
    assert [e.label for e in examples] == [1.0, 1.0, 0.0, 0.0]
    assert [e.uid for e in examples] == ["11", "r2", "13", "14"]
    assert [e.weight for e in examples] == [1.0, 3.0, 1.0, 0.5]
    assert [e.offset for e in examples] == [0.0] * 4
    assert examples[0].ids == {"userId": "7", "songId": "s1"}
    assert examples[1].ids == {"userId": "8", "songId": "42"}
    assert sorted(examples[0].bags["features"]) == [("a", "", 3.0), ("b", "x", 0.5)]
    assert examples[1].bags["songFeatures"] == [("genre", "rock", 1.0)]
    assert stats.rows == 4 and stats.duplicate_features == 1 and stats.files == [path]


def test_configured_response_column(tmp_path: Path) -> None:
    write_with_apache_avro(tmp_path / "p.avro", PHOTON_FIELDS, photon_records())
    reader = ExampleReader(ColumnNames(response="weight"))
    with pytest.raises(DataError, match=r"p.avro: record 0: field 'weight': is null"):
        list(reader.read(str(tmp_path)))


def test_schema_without_label_names_file(tmp_path: Path) -> None:
    fields = [f for f in PHOTON_FIELDS if f["name"] != "response"]
    records = [{k: v for k, v in r.items() if k != "response"} for r in photon_records()]
    write_with_apache_avro(tmp_path / "nolabel.avro", fields, records)
    with pytest.raises(DataError, match=r"nolabel.avro: no usable label field: expected one of label, response"):
        list(ExampleReader().read(str(tmp_path)))


def test_bad_label_value_names_record_and_field(tmp_path: Path) -> None:
    records = photon_records()
    records[2]["response"] = "maybe"
    write_with_apache_avro(tmp_path / "bad.avro", PHOTON_FIELDS, records)
    with pytest.raises(DataError, match=r"bad.avro: record 2: field 'response': not a number: 'maybe'"):
        list(ExampleReader().read(str(tmp_path)))


def test_missing_entity_id_names_record_and_field(tmp_path: Path) -> None:
    write_with_apache_avro(tmp_path / "p.avro", PHOTON_FIELDS, photon_records())
    reader = ExampleReader(entity_fields=("artistId",))
    with pytest.raises(DataError, match=r"record 0: field 'artistId': entity id missing"):
        list(reader.read(str(tmp_path)))


def test_truncated_file(tmp_path: Path) -> None:
    many = photon_records() * 2000
    path = Path(write_with_apache_avro(tmp_path / "full.avro", PHOTON_FIELDS, many))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"full.avro: record \d+: corrupt or truncated Avro data"):
        list(ExampleReader().read(str(path)))


def test_not_avro(tmp_path: Path) -> None:
    (tmp_path / "junk.avro").write_bytes(b"this is not avro at all")
    with pytest.raises(DataError, match=r"junk.avro: not a readable Avro file"):
        list(ExampleReader().read(str(tmp_path)))


def test_merge_duplicates_counts_repeats() -> None:
    merged, repeats = merge_duplicates([("a", "", 1.0), ("a", "", 2.0), ("a", "", 3.0), ("b", "", 1.0)])
    assert sorted(merged) == [("a", "", 6.0), ("b", "", 1.0)] and repeats == 2
