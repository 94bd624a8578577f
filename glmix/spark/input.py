"""Reading TrainingExample Avro in Spark: Photon variations normalized, bad records flagged.

spark-avro turns a union such as [double, int, boolean, string] into a struct of ``member0``,
``member1``, ...; the helpers here fold those back into one double (or string) column, so every
job sees the same normalized frame: ``uid, label, weight, offset, features, <entity ids>`` plus
``_bad``/``_bad_field`` (the first problem of the row, or null).

Bad rows are never silently lost: with policy ``fail`` a job stops and names the file, record and
field (found by re-reading that one file with :class:`glmix.io.examples.ExampleReader`); with
``drop`` they are dropped and counted by reason through a Spark ``Observation``, which costs no
extra pass over the data.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from urllib.parse import urlparse

import fastavro
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, DataType, DoubleType, FloatType, StringType, StructType

from glmix.errors import DataError
from glmix.io.avro import writer_schema
from glmix.io.examples import RESPONSE_CANDIDATES, ColumnNames, Example, ExampleReader
from glmix.io.storage import storage_for
from glmix.settings import BadRecordPolicy, Task

BAD_REASONS = ("invalid_label", "invalid_weight", "invalid_offset", "non_finite_feature", "missing_entity_id",
               "missing_uid")
HEADER_BYTES = 1 << 20


@dataclass(frozen=True)
class InputSpec:
    """What a job reads: where, how the columns are named, which bags and ids it needs."""

    uri: str
    bags: tuple[str, ...]
    columns: ColumnNames = ColumnNames()
    entity_fields: tuple[str, ...] = ()
    task: Task | None = None
    require_uid: bool = False
    policy: BadRecordPolicy = "fail"
    keep_bags: bool = False  # also keep each bag as its own normalized column (scoring needs them apart)
    # sum repeated (name, term) pairs here; jobs that index rows (spark_indexing) leave it to the
    # index lookup, where repeats are found on sorted integers instead of hashed strings
    merge_repeats: bool = True


@dataclass
class LoadedInput:
    frame: DataFrame
    located: DataFrame  # the same rows with ``_file`` (their file), for naming a bad row's file
    observation: Observation
    spec: InputSpec
    files: list[str]
    schema_fields: set[str] = field(default_factory=set)

    def good_rows(self) -> DataFrame:
        """The rows a job may use: all of them under ``fail`` (checked afterwards), the good ones under ``drop``."""
        return self.frame if self.spec.policy == "fail" else self.frame.filter(F.col("_bad").isNull())

    def counts(self) -> dict[str, int]:
        """Rows read, repeats merged and bad rows by reason; valid after the job's action ran."""
        return {k: int(v or 0) for k, v in self.observation.get.items()}

    def check(self) -> dict[str, int]:
        """After the action: under ``fail`` raise on the first bad row (naming file, record and field)."""
        counts = self.counts()
        if self.spec.policy == "fail" and any(counts[f"bad_{r}"] for r in BAD_REASONS):
            self._raise_first_bad()
        return counts

    def _source_file(self, spark_path: str) -> str:
        """Spark reports 'file:/x' or 'hdfs://host:port/x'; name the file as the user gave it."""
        return next((f for f in self.files if _same_file(spark_path, f)), spark_path)

    def _raise_first_bad(self) -> None:
        row = self.located.filter(F.col("_bad").isNotNull()).select("_file", "_bad", "_bad_field").first()
        assert row is not None, "called only when a row is bad"
        path, reason, bad_field = self._source_file(row["_file"]), row["_bad"], row["_bad_field"]
        reader = ExampleReader(self.spec.columns, bags=self.spec.bags, entity_fields=self.spec.entity_fields)
        record = _first_bad_record(reader, path, self.spec, bad_field)
        raise DataError(f"{reason.replace('_', ' ')} (policy 'fail'; use 'drop' to drop and count such rows)",
                        path=path, record=record, field=bad_field)


def dropped_by_reason(counts: dict[str, int]) -> dict[str, int]:
    """The non-zero bad-row counters of LoadedInput.counts(), keyed by reason."""
    return {k.removeprefix("bad_"): v for k, v in counts.items() if k.startswith("bad_") and v}


def _same_file(spark_path: str, uri: str) -> bool:
    return urlparse(spark_path).path == urlparse(uri).path or urlparse(spark_path).path == uri


def _first_bad_record(reader: ExampleReader, path: str, spec: InputSpec, bad_field: str) -> int | None:
    """Index of the first record of ``path`` that fails the same check, by re-reading the file."""
    try:
        for index, example in enumerate(reader.read(path)):
            if _example_is_bad(example, spec, bad_field):
                return index
    except DataError as exc:
        return exc.record
    return None


def _example_is_bad(example: Example, spec: InputSpec, bad_field: str) -> bool:
    if bad_field in spec.bags:
        return any(not math.isfinite(v) for _, _, v in example.bags.get(bad_field, ()))
    if bad_field == spec.columns.weight:
        return bool(example.weight < 0)
    if bad_field == spec.columns.uid:
        return example.uid is None
    return not _label_valid(example.label, spec.task)


def _label_valid(label: float, task: Task | None) -> bool:
    if task == "logistic":
        return label in (0.0, 1.0)
    if task == "poisson":
        return label >= 0
    return True


def header_fields(uri: str) -> set[str]:
    """Top-level field names of an Avro file, from its header only."""
    storage = storage_for(uri)
    with storage.open_read(uri) as stream:
        head = stream.read(HEADER_BYTES)
    try:
        return {f["name"] for f in writer_schema(fastavro.reader(io.BytesIO(head)))["fields"]}
    except Exception as exc:
        raise DataError(f"not a readable Avro file ({exc})", path=uri) from exc


def _members(dtype: DataType) -> list[tuple[str, DataType]] | None:
    if isinstance(dtype, StructType) and dtype.fields and all(f.name.startswith("member") for f in dtype.fields):
        return [(f.name, f.dataType) for f in dtype.fields]
    return None


def _number(column: Column, dtype: DataType) -> Column:
    if isinstance(dtype, BooleanType):
        return column.cast("double")
    if isinstance(dtype, StringType):
        lowered = F.lower(F.trim(column))
        return (F.when(lowered == "true", F.lit(1.0)).when(lowered == "false", F.lit(0.0))
                .otherwise(lowered.cast("double")))
    return column.cast("double")


def number_column(frame: DataFrame, name: str) -> Column:
    """A double from a numeric, boolean, numeric-string or union column (spark-avro's member structs)."""
    dtype = frame.schema[name].dataType
    members = _members(dtype)
    if members is None:
        return _number(F.col(name), dtype)
    return F.coalesce(*[_number(F.col(name)[m], t) for m, t in members])


def _id(column: Column, dtype: DataType) -> Column:
    if isinstance(dtype, (DoubleType, FloatType)):  # 7.0 and 7 are the same id
        return F.when(column == F.floor(column), column.cast("long").cast("string")).otherwise(column.cast("string"))
    return column.cast("string")


def id_column(frame: DataFrame, name: str, metadata_map: str) -> Column:
    """An entity id or uid as a string: a top-level field (any type or union) or a metadataMap key."""
    if name in frame.columns:
        dtype = frame.schema[name].dataType
        members = _members(dtype)
        if members is None:
            return _id(F.col(name), dtype)
        return F.coalesce(*[_id(F.col(name)[m], t) for m, t in members])
    if metadata_map in frame.columns:
        return F.col(metadata_map)[name]
    return F.lit(None).cast("string")


def _is_normalized(dtype: DataType) -> bool:
    """A bag already in the normalized shape: struct<name: string, term: string, value: double>."""
    if not isinstance(dtype, ArrayType) or not isinstance(dtype.elementType, StructType):
        return False
    fields = dtype.elementType.fields
    return ([f.name for f in fields] == ["name", "term", "value"] and isinstance(fields[0].dataType, StringType)
            and isinstance(fields[1].dataType, StringType) and isinstance(fields[2].dataType, DoubleType))


def _normalized_bag_sql(bag: str, schema: StructType) -> str:
    """Photon-schema bags are used as they are (a null term then stands for ''): the transform is an
    interpreted higher-order function, several times slower than the plain column, so it runs only
    for other shapes."""
    if _is_normalized(schema[bag].dataType):
        return f"coalesce(`{bag}`, array())"
    return (f"transform(coalesce(`{bag}`, array()), f -> struct(f.name as name, "
            f"coalesce(f.term, '') as term, cast(f.value as double) as value))")


def normalized_bag(bag: str, schema: StructType) -> Column:
    """One bag as ``array<struct<name, term, value: double>>`` (a missing bag made empty; a null term is '')."""
    return F.expr(_normalized_bag_sql(bag, schema))


def kept_bag_column(bag: str) -> str:
    """The column a bag is kept in with ``keep_bags`` (apart from the merged ``features``)."""
    return f"_bag_{bag}"


def merged_features(bags: tuple[str, ...], schema: StructType, merge_repeats: bool = True) -> Column:
    """The shard's bags (columns of ``schema``) concatenated, with repeated (name, term) pairs summed
    (no shuffle needed) unless ``merge_repeats`` is off. A null term stands for '' (consumers coalesce it)."""
    if not bags:
        return F.array().cast("array<struct<name:string,term:string,value:double>>")
    arrays = ", ".join(_normalized_bag_sql(b, schema) for b in bags)
    concatenated = f"concat({arrays})"
    if not merge_repeats:
        return F.expr(concatenated)
    # repeats are rare: rows whose names are all distinct have none (a compiled hash set of strings);
    # the others are checked with a hash set of 64-bit (name, term) hashes (an interpreted lambda;
    # array_distinct of structs is quadratic per row); a hash collision only sends a row through the
    # exact merge below
    names = f"({concatenated}).name"
    hashes = f"transform({concatenated}, f -> xxhash64(f.name, coalesce(f.term, '')))"
    keys = (f"array_distinct(transform({concatenated}, f -> struct(f.name as name, "
            f"coalesce(f.term, '') as term)))")
    merged = (f"transform({keys}, k -> struct(k.name as name, k.term as term, "
              f"aggregate(filter({concatenated}, f -> f.name = k.name and coalesce(f.term, '') = k.term), 0D, "
              f"(acc, f) -> acc + f.value) as value))")
    return F.expr(f"case when size(array_distinct({names})) = size({concatenated}) then {concatenated} "
                  f"when size(array_distinct({hashes})) = size({concatenated}) then {concatenated} "
                  f"else {merged} end")


def load_examples(spark: SparkSession, spec: InputSpec) -> LoadedInput:
    """Read and normalize; validate the schema of every file up front (cheap: headers only)."""
    storage = storage_for(spec.uri)
    files = storage.data_files(spec.uri, suffix=".avro")
    if not files:
        raise DataError("no .avro files found", path=spec.uri)
    field_sets = {path: header_fields(path) for path in files}
    required = set(spec.bags) | ({spec.columns.uid} if spec.require_uid else set())
    for path, names in field_sets.items():
        response = spec.columns.response or next((c for c in RESPONSE_CANDIDATES if c in names), None)
        if response is None or response not in names:
            raise DataError(f"schema mismatch: no usable label field (expected "
                            f"{spec.columns.response or ' or '.join(RESPONSE_CANDIDATES)})", path=path)
        missing = sorted(required - names)
        if missing:
            raise DataError(f"schema mismatch: field(s) {', '.join(missing)} not in the file's schema",
                            path=path, field=missing[0])
    raw = spark.read.format("avro").load(files)
    c = spec.columns
    response = c.response or next(r for r in RESPONSE_CANDIDATES if r in raw.columns)
    label = number_column(raw, response)
    weight = number_column(raw, c.weight) if c.weight in raw.columns else F.lit(None).cast("double")
    offset = number_column(raw, c.offset) if c.offset in raw.columns else F.lit(None).cast("double")
    ids = {name: id_column(raw, name, c.metadata_map) for name in spec.entity_fields}
    columns = [
        id_column(raw, c.uid, c.metadata_map).alias("uid"),
        label.alias("label"),
        F.coalesce(weight, F.lit(1.0)).alias("weight"),
        F.coalesce(offset, F.lit(0.0)).alias("offset"),
        merged_features(spec.bags, raw.schema, spec.merge_repeats).alias("features"),
        (F.expr(f"size(concat({', '.join(f'coalesce(`{b}`, array())' for b in spec.bags)}))") if spec.bags
         else F.lit(0)).alias("_raw_nnz"),
        *[F.expr(f"exists(coalesce(`{b}`, array()), f -> isnan(f.value) or abs(f.value) = double('inf'))")
          .alias(f"_non_finite_{i}") for i, b in enumerate(spec.bags)],
        *[col.alias(name) for name, col in ids.items()],
        *[normalized_bag(b, raw.schema).alias(kept_bag_column(b)) for b in (spec.bags if spec.keep_bags else ())],
    ]
    checks = _checks(spec, response)
    bad = F.lit(None).cast("string")
    bad_field = F.lit(None).cast("string")
    for reason, field_name, condition in reversed(checks):
        bad = F.when(condition, F.lit(reason)).otherwise(bad)
        bad_field = F.when(condition, F.lit(field_name)).otherwise(bad_field)
    frame = raw.select(*columns).withColumn("_bad", bad).withColumn("_bad_field", bad_field)
    # the file of each row only where a bad row is named: carried through every job, it cost ~3%
    located = raw.select(*columns, F.col("_metadata.file_path").alias("_file")) \
        .withColumn("_bad", bad).withColumn("_bad_field", bad_field)
    observation = Observation(f"input-{id(frame)}")
    metrics = [F.count(F.lit(1)).alias("rows_in")]
    if spec.merge_repeats:
        metrics.append(F.sum(F.col("_raw_nnz") - F.size("features")).alias("repeated_features_merged"))
    metrics += [F.sum(F.when(F.col("_bad") == r, 1).otherwise(0)).alias(f"bad_{r}") for r in BAD_REASONS]
    helpers = ["_raw_nnz"] + [f"_non_finite_{i}" for i in range(len(spec.bags))]
    frame = frame.observe(observation, *metrics).drop(*helpers)
    return LoadedInput(frame, located, observation, spec, files)


def _checks(spec: InputSpec, response: str) -> list[tuple[str, str, Column]]:
    """(reason, field, condition) in priority order: the first that holds names the row's problem."""
    label = F.col("label")
    label_bad = label.isNull() | F.isnan(label) | (F.abs(label) == float("inf"))
    if spec.task == "logistic":
        label_bad = label_bad | ~label.isin(0.0, 1.0)
    elif spec.task == "poisson":
        label_bad = label_bad | (label < 0)
    weight, offset = F.col("weight"), F.col("offset")
    checks = [("invalid_label", response, label_bad),
              ("invalid_weight", spec.columns.weight, F.isnan(weight) | (weight < 0) | (weight == float("inf"))),
              ("invalid_offset", spec.columns.offset, F.isnan(offset) | (F.abs(offset) == float("inf")))]
    checks += [("non_finite_feature", bag, F.col(f"_non_finite_{i}")) for i, bag in enumerate(spec.bags)]
    for name in spec.entity_fields:
        checks.append(("missing_entity_id", name, F.col(name).isNull() | (F.col(name) == "")))
    if spec.require_uid:
        checks.append(("missing_uid", spec.columns.uid, F.col("uid").isNull()))
    return checks


def read_scores(spark: SparkSession, uri: str, exclude: str | None = None) -> DataFrame:
    """Scores of the other coordinates by uid: ``uid, score`` Parquet/Avro, or ScoringResult Avro whose
    ``coordinateScores`` are summed leaving out ``exclude`` (the coordinate being trained)."""
    files = storage_for(uri).data_files(uri)
    fmt = "avro" if any(f.endswith(".avro") for f in files) else "parquet"
    frame = spark.read.format(fmt).load(uri)
    if "coordinateScores" in frame.columns:
        others = F.map_filter("coordinateScores", lambda k, v: k != F.lit(exclude or ""))
        frame = frame.withColumn("score", F.aggregate(F.map_values(others), F.lit(0.0), lambda acc, v: acc + v))
    missing = {"uid", "score"} - set(frame.columns)
    if missing:
        raise DataError(f"offsets need columns uid and score (or coordinateScores); missing "
                        f"{', '.join(sorted(missing))}", path=uri)
    return frame.select(F.col("uid").cast("string"), F.col("score").cast("double").alias("_score"))


def read_summed_scores(spark: SparkSession, uris: list[str], exclude: str | None = None) -> DataFrame:
    """``uid, _score``: the sum of several coordinates' scores (each a :func:`read_scores` source).
    A uid missing from any source gets a null ``_score``, so callers count it as unscored rather
    than train on a partial sum."""
    if len(uris) == 1:
        return read_scores(spark, uris[0], exclude)
    sources = [read_scores(spark, uri, exclude).withColumn("_source", F.lit(k)) for k, uri in enumerate(uris)]
    union = sources[0]
    for source in sources[1:]:
        union = union.unionByName(source)
    summed = union.groupBy("uid").agg(F.sum("_score").alias("_score"), F.count_distinct("_source").alias("_n"))
    return summed.select("uid", F.when(F.col("_n") == len(uris), F.col("_score")).alias("_score"))
