"""Photon-ML-shaped datasets written the way other systems write them (Apache ``avro``, Pig-style
nullable fields), made from glmix's synthetic data so that a model has something to learn.

Variants of the row id: ``null`` (a nullable uid, null on every record), ``absent`` (no uid field),
``int``, ``long`` and ``string`` uids, ``duplicates`` (string uids, some repeated). Every variant
names the response ``response`` (a union), carries ``userId`` as a top-level int, ``movieId`` in
``metadataMap``, bag items as ``["null", record]`` with a nullable term, and repeats a (name, term)
pair now and then; column names can be renamed (``names``) as a team's own pipeline might.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import avro.datafile
import avro.io
import avro.schema
import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from glmix.data.synthetic import generate, movielens_spec
from glmix.io.avro import with_header_schema
from glmix.model.linear_model import read_models

UID_TYPES = {"null": ["null", "string"], "int": "int", "long": "long", "string": "string",
             "duplicates": "string"}
BAGS = ("features", "userFeatures", "movieFeatures")
RENAMED = {"uid": "rowId", "weight": "w", "metadata_map": "meta"}   # as a team's own pipeline might name them


def _feature_items() -> dict[str, Any]:
    return {"type": "array", "items": ["null", {
        "type": "record", "name": "NameTermValueAvro", "fields": [
            {"name": "name", "type": "string"}, {"name": "term", "type": ["null", "string"], "default": None},
            {"name": "value", "type": "double"}]}]}


def photon_schema(variant: str, names: dict[str, str]) -> dict[str, Any]:
    fields: list[dict[str, Any]] = []
    if variant != "absent":
        fields.append({"name": names.get("uid", "uid"), "type": UID_TYPES[variant]})
    fields.append({"name": "response", "type": ["double", "float", "int", "long", "boolean", "string"]})
    fields.append({"name": BAGS[0], "type": _feature_items()})   # defines the item record; the others name it
    fields += [{"name": bag, "type": {"type": "array", "items": ["null", "NameTermValueAvro"]}} for bag in BAGS[1:]]
    fields += [{"name": "userId", "type": "int"},
               {"name": names.get("weight", "weight"), "type": ["null", "double"], "default": None},
               {"name": names.get("offset", "offset"), "type": ["null", "double"], "default": None},
               {"name": names.get("metadata_map", "metadataMap"),
                "type": ["null", {"type": "map", "values": "string"}], "default": None}]
    return {"type": "record", "name": "TrainingExampleAvro", "namespace": "com.linkedin.photon.avro.generated",
            "fields": fields}


def _photon_records(records: Iterator[dict[str, Any]], variant: str, names: dict[str, str],
                    first: int, offsets: bool = False) -> Iterator[dict[str, Any]]:
    response_types = [int, float, bool, str]
    for n, record in enumerate(records):
        label = record["label"]
        out: dict[str, Any] = {"response": response_types[n % 4](int(label)) if n % 4 != 3 else str(label)}
        if n % 4 == 2:
            out["response"] = bool(label)
        uid = first + n
        if variant == "null":
            out[names.get("uid", "uid")] = None
        elif variant in ("int", "long"):
            out[names.get("uid", "uid")] = uid + (2**40 if variant == "long" else 0)
        elif variant == "string":
            out[names.get("uid", "uid")] = f"row-{uid}"
        elif variant == "duplicates":
            out[names.get("uid", "uid")] = f"row-{uid - uid % 7 if n % 50 == 0 else uid}"
        for bag in BAGS:
            items = [{"name": f["name"], "term": f["term"] or None, "value": f["value"]} for f in record[bag]]
            if items and n % 10 == 0:   # a repeated (name, term) pair, split in two halves
                first_item = dict(items[0], value=items[0]["value"] / 2)
                items = [first_item, dict(first_item), *items[1:]]
            out[bag] = items
        out["userId"] = int(record["userId"][1:])
        out[names.get("weight", "weight")] = None if n % 3 else 1.0
        out[names.get("offset", "offset")] = 0.1 * (n % 5) - 0.2 if offsets and n % 2 == 0 else None
        out[names.get("metadata_map", "metadataMap")] = {"movieId": record["movieId"]}
        yield out


def write_photon_dataset(target: Path, rows: int, seed: int, variant: str = "null",
                         names: dict[str, str] | None = None, empty_file: bool = True, offsets: bool = False) -> Path:
    """``target/{train,validation}/part-*.avro`` with Apache avro's writer; with ``empty_file``
    each directory also holds a data file with no records, as a task with no input writes; with
    ``offsets`` every other row has an offset (the others a null one)."""
    names = names or {}
    source = target / "_synthetic"
    generate(movielens_spec(rows=rows, seed=seed), str(source))
    schema = avro.schema.parse(json.dumps(photon_schema(variant, names)))
    first = 0
    for dataset in ("train", "validation"):
        (target / dataset).mkdir(parents=True, exist_ok=True)
        for k, part in enumerate(sorted((source / dataset).glob("*.avro"))):
            with open(part, "rb") as stream:
                records = list(fastavro.reader(stream))
            with open(target / dataset / f"part-{k:05d}.avro", "wb") as out:
                writer = avro.datafile.DataFileWriter(out, avro.io.DatumWriter(), schema)
                for record in _photon_records(iter(records), variant, names, first, offsets):
                    writer.append(record)
                writer.close()
            first += len(records)
        if empty_file:
            with open(target / dataset / "part-99999.avro", "wb") as out:
                avro.datafile.DataFileWriter(out, avro.io.DatumWriter(), schema).close()
    return target


def write_parquet_copy(source: Path, target: Path, rows_per_file: int = 700) -> Path:
    """The same rows as Parquet written by pyarrow (as a team's own pipeline might): the response a
    double, the uid kept as it is (null here), several files."""
    records = []
    for path in sorted(source.glob("*.avro")):
        with open(path, "rb") as stream:
            records += [dict(r, response=float(r["response"])) for r in fastavro.reader(stream)]
    target.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(records), rows_per_file):
        table = pa.Table.from_pylist(records[k:k + rows_per_file])
        if "uid" in table.column_names:
            table = table.set_column(table.column_names.index("uid"), "uid", table.column("uid").cast(pa.string()))
        pq.write_table(table, target / f"part-{k // rows_per_file:05d}.parquet")
    return target


PHOTON_MODEL_SCHEMA = {
    "type": "record", "name": "BayesianLinearModelAvro", "namespace": "com.linkedin.photon.avro.generated",
    "fields": [
        {"name": "modelId", "type": "string"},
        {"name": "modelClass", "type": "string", "default": None},   # accepted by Avro 1.7, refused today
        {"name": "means", "type": {"type": "array", "items": {"type": "record", "name": "NameTermValueAvro", "fields": [
            {"name": "name", "type": "string"}, {"name": "term", "type": "string"},
            {"name": "value", "type": "double"}]}}},
        {"name": "variances", "type": ["null", {"type": "array", "items": "NameTermValueAvro"}], "default": None},
        {"name": "lossFunction", "type": "string", "default": None}]}


def write_photon_model_file(path: Path, records: list[dict[str, Any]]) -> None:
    """Written with the schema as Photon ML's files declare it: Apache avro (like fastavro) refuses
    its defaults today, so the records are written under a valid copy and the header then carries
    Photon's schema, as an old writer left it."""
    valid = json.loads(json.dumps(PHOTON_MODEL_SCHEMA))
    for field in valid["fields"]:
        if field["name"] in ("modelClass", "lossFunction"):
            field.pop("default")
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(valid), records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(with_header_schema(buffer.getvalue(), lambda _: PHOTON_MODEL_SCHEMA))


def photon_model_record(model_id: str, means: dict, variances: dict | None) -> dict[str, Any]:
    """A BayesianLinearModelAvro record as Photon ML writes it."""
    triples = lambda values: [{"name": n, "term": t, "value": v} for (n, t), v in values.items()]  # noqa: E731
    return {"modelId": model_id, "modelClass": "com.linkedin.photon.ml.supervised.classification."
            "LogisticRegressionModel", "means": triples(means),
            "variances": None if variances is None else triples(variances), "lossFunction": "LOGISTIC"}


def write_photon_model(truth: Path, target: Path) -> Path:
    """A Photon ML GAME model directory made from a synthetic world's true models: a fixed effect
    (with variances) on shard ``globalShard`` and a per-user random effect on ``userShard``, user
    ids as the int ids of the Photon-shaped data."""
    fixed = next(read_models(str(truth / "fixed-effect")))
    write_photon_model_file(target / "fixed-effect" / "global" / "coefficients" / "part-00000.avro",
                       [photon_model_record("fixed-effect", fixed.means, {k: 0.01 for k in fixed.means})])
    (target / "fixed-effect" / "global" / "id-info").write_text("globalShard\n")
    users = [photon_model_record(m.model_id[1:], m.means, None) for m in read_models(str(truth / "random-effect" / "userId"))]
    for k in range(2):
        write_photon_model_file(target / "random-effect" / "per-user" / "coefficients" / f"part-{k:05d}.avro", users[k::2])
    (target / "random-effect" / "per-user" / "id-info").write_text("userId\nuserShard\n")
    (target / "model-metadata.json").write_text(
        '\n{\n  "modelType": "LOGISTIC_REGRESSION",\n  "optimizationConfigurations": {"global": {}}\n}\n')
    return target
