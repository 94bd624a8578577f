"""The export job's work: a published GAME model (or a registry version) -> a serving bundle.

The fixed effects are small and written by the driver. Each random effect's entities are read by
Spark, their (name, term) coefficients turned into indices of the coordinate's feature index in
Arrow, range-partitioned by shard and sorted by id, and each shard's LMDB file is built by the task
that holds its entities and copied from the executor's local disk into the temporary output;
only shard names, counts and digests come back to the driver. The bundle is published atomically.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
from pydantic import Field, model_validator
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from glmix.errors import ConfigError, DataError
from glmix.io.storage import join, publish_atomically, qualified, storage_for, with_namenode
from glmix.model.game_model import CoordinateModel, read_game_model
from glmix.model.linear_model import read_models
from glmix.registry.store import ModelRegistry
from glmix.serving.bundle import BundleCoordinate, Manifest, coordinate_dir
from glmix.serving.entity_store import encode, shard_name, write_shard
from glmix.spark.indexing import KEY_SEPARATOR, looked_up
from glmix.spark.job import JobReport
from glmix.spark.job_args import SparkJobArgs
from glmix.stage_args import Location

SHARD_RESULT = "shard int, entities long, bytes long, sha256 string"


class ExportArgs(SparkJobArgs):
    PROG: ClassVar[str] = "export_bundle"

    model: Location | None = Field(None, description="a published GAME model directory (e.g. OUTPUT/best)")
    registry: Location | None = Field(None, description="a model registry's root (with --name)")
    name: str | None = Field(None, description="the registry's model name")
    version: int | None = Field(None, description="the registry version (default: the production version)")
    output: Location
    shards: int = Field(8, ge=1, description="LMDB shards per random effect")

    @model_validator(mode="after")
    def _one_source(self) -> ExportArgs:
        if (self.model is None) == (self.registry is None):
            raise ValueError("give either --model or --registry (with --name)")
        if self.registry is not None and not self.name:
            raise ValueError("--registry needs --name")
        return self


def _source(args: ExportArgs) -> tuple[str, str, int | None]:
    """The GAME model directory, how the manifest names it, and its registry version."""
    if args.model is not None:
        return args.model, args.model, None
    assert args.registry is not None and args.name is not None
    version = ModelRegistry(args.registry).version(args.name, args.version)
    return version.model_uri, f"{args.registry}#{args.name}:{version.number}", version.number


def _write_table(table: pa.Table, uri: str) -> str:
    """Write an Arrow file to storage; its sha256."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "table.arrow"
        feather.write_feather(table, str(local), compression="uncompressed")
        return _upload(local, uri)


def _upload(local: Path, uri: str) -> str:
    """Copy a local file to storage; its sha256, computed on the way (one read)."""
    digest = hashlib.sha256()
    with open(local, "rb") as source, storage_for(uri).open_write(uri) as sink:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()


def _export_fixed(model: CoordinateModel, target: str) -> tuple[BundleCoordinate, dict[str, str]]:
    fixed = list(read_models(qualified(model.coefficients)))
    if len(fixed) != 1:
        raise ConfigError(f"{model.coefficients}: a fixed-effect model holds one model, found {len(fixed)}")
    keys = sorted(fixed[0].means)
    table = pa.table({"name": [k[0] for k in keys], "term": [k[1] or "" for k in keys],
                      "value": pa.array([fixed[0].means[k] for k in keys], pa.float64())})
    relative = f"{coordinate_dir(model.name)}/fixed.arrow"
    digest = _write_table(table, join(target, relative))
    shard = model.shard()
    return (BundleCoordinate(name=model.name, type="fixed", bags=tuple(shard.bags), intercept=shard.intercept,
                             features=len(keys)), {relative: digest})


def _build_shards(batches: Iterable[pa.RecordBatch], keys: pa.Array, directory: str) -> Iterator[pa.RecordBatch]:
    """A task's entities (sorted by shard, then id) -> one LMDB file per shard, copied to ``directory``."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="glmix-bundle-") as tmp:
        def entities() -> Iterator[tuple[int, bytes, bytes]]:
            for batch in batches:
                row_of, found, values, _ = looked_up(batch.column("means"), keys)
                indices = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int32)
                bounds = np.searchsorted(row_of, np.arange(len(batch) + 1))
                ids, shards = batch.column("entity").to_pylist(), batch.column("shard").to_pylist()
                for i, (entity, shard) in enumerate(zip(ids, shards, strict=True)):
                    start, end = bounds[i], bounds[i + 1]
                    yield shard, entity.encode(), encode(indices[start:end], values[start:end])

        # the entities arrive sorted by shard: each shard's store is written as its run streams by
        for shard, run in itertools.groupby(entities(), key=lambda entity: entity[0]):
            local = Path(tmp) / shard_name(shard)
            count = write_shard(local, ((key, value) for _, key, value in run))
            results.append({"shard": shard, "entities": count, "bytes": local.stat().st_size,
                            "sha256": _upload(local, join(directory, shard_name(shard)))})
            local.unlink()
    if results:
        yield pa.RecordBatch.from_pylist(results, schema=pa.schema([
            ("shard", pa.int32()), ("entities", pa.int64()), ("bytes", pa.int64()), ("sha256", pa.string())]))


def _export_random(spark: SparkSession, model: CoordinateModel, target: str,
                   shards: int) -> tuple[BundleCoordinate, dict[str, str]]:
    # the namenode spelled out: a Spark session made without the cluster's configuration reads it too
    frame = spark.read.format("avro").load(with_namenode(qualified(model.coefficients)))
    means = frame.select(F.col("modelId").cast("string").alias("entity"), "means")
    terms = means.select(F.explode("means").alias("m")).select(
        F.col("m.name").alias("name"), F.coalesce(F.col("m.term"), F.lit("")).alias("term")).distinct()
    features = sorted((r["name"], r["term"]) for r in terms.collect())
    relative = coordinate_dir(model.name)
    files = {f"{relative}/features.arrow": _write_table(
        pa.table({"name": [n for n, _ in features], "term": [t for _, t in features]}),
        join(target, relative, "features.arrow"))}
    keys = pa.array([f"{n}{KEY_SEPARATOR}{t}" for n, t in features], pa.string())
    directory = join(target, relative)
    build = spark.sparkContext.broadcast(keys)
    keyed = (means.withColumn("shard", (F.crc32(F.col("entity").cast("binary")) % shards).cast("int"))
             .repartitionByRange(shards, "shard")
             .sortWithinPartitions("shard", F.col("entity").cast("binary")))
    try:
        built = keyed.mapInArrow(lambda batches: _build_shards(batches, build.value, directory), SHARD_RESULT).collect()
    except Exception as exc:   # a task's error arrives wrapped by Spark, with the worker's traceback
        twice = re.search(r"entity ('.*?') written twice", str(exc))
        if twice is None:
            raise
        raise DataError(f"entity {twice.group(1)} has two models", path=model.coefficients, field="modelId") from None
    by_shard = {int(r["shard"]): r for r in built}
    for empty in set(range(shards)) - set(by_shard):     # no entity hashed there: an empty store
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / shard_name(empty)
            write_shard(local, [])
            files[f"{relative}/{shard_name(empty)}"] = _upload(local, join(directory, shard_name(empty)))
    files.update({f"{relative}/{shard_name(s)}": r["sha256"] for s, r in by_shard.items()})
    feature_shard = model.shard()
    return (BundleCoordinate(name=model.name, type="random", bags=tuple(feature_shard.bags),
                             intercept=feature_shard.intercept,
                             entity_field=model.entity_field, features=len(features),
                             entities=sum(int(r["entities"]) for r in built), shards=shards), files)


def export_bundle(spark: SparkSession, args: ExportArgs) -> dict[str, Any]:
    model_dir, source, version = _source(args)
    models, metadata = read_game_model(qualified(model_dir))
    given = [m.name for m in models if m.type == "scores"]
    if given:
        raise ConfigError(f"{model_dir}: coordinate {given[0]} is given by its scores (a Keras or external model); "
                          "a serving bundle holds GLM coefficients only")
    output = qualified(args.output)
    report = JobReport("export_bundle", {"model": source, "output": output, "shards": args.shards})
    with publish_atomically(output) as tmp:
        coordinates, files = [], {}
        for model in models:
            started = time.monotonic()
            coordinate, written = (_export_fixed(model, tmp) if model.type == "fixed"
                                   else _export_random(spark, model, tmp, args.shards))
            coordinates.append(coordinate)
            files.update(written)
            report.counters.setdefault("coordinates", {})[model.name] = {
                "features": coordinate.features, "entities": coordinate.entities,
                "seconds": round(time.monotonic() - started, 3)}
        manifest = Manifest(model=source, model_id=str(metadata.get("model_id", "game")), version=version,
                            task=metadata.get("task"), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            coordinates=tuple(coordinates), files=files)
        storage_for(tmp).write_bytes(join(tmp, "manifest.json"), manifest.to_json())
        report.counters["bytes"] = sum(storage_for(tmp).file_size(join(tmp, f)) for f in files)
        report.write_into(tmp)
    return report.to_dict()

