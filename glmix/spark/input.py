"""Reading TrainingExample data (Avro or Parquet) in Spark: Photon variations normalized, bad
records flagged.

spark-avro turns a union such as [double, int, boolean, string] into a struct of ``member0``,
``member1``, ...; the helpers here fold those back into one double (or string) column, so every
job sees the same normalized frame: ``uid, label, weight, offset, features, <entity ids>`` plus
``_bad``/``_bad_field`` (the first problem of the row, or null).

The format comes from the files' names (``.avro`` or ``.parquet``; one format per input). Parquet
has the same shape as the Avro (a bag is a list of name/term/value structs) without the unions.

Rows without a uid (null, empty, or no such field, as in Photon ML's own files) are numbered by
where they are: ``<file relative to the input>#<record>``. Every stage that reads the same input
numbers it the same way. Parquet gives each row's index in its file. Avro input that needs
numbering is read in splits whose size depends on the input alone (not on the cluster's cores, as
Spark's would), one split per task, and a record's position is counted within its split
(``...@<split start>#<record>`` past a file's first split).

Bad rows are never silently lost: with policy ``fail`` a job stops and names the file, record and
field (found by re-reading that one file with :class:`glmix.io.examples.ExampleReader`); with
``drop`` they are dropped and counted by reason through a Spark ``Observation``, which costs no
extra pass over the data.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlparse

import fastavro
from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BooleanType, DataType, DoubleType, FloatType, StringType, StructType

from glmix.errors import DataError
from glmix.io.avro import writer_schema
from glmix.io.dated import DatedDays
from glmix.io.examples import RESPONSE_CANDIDATES, ColumnNames, Example, ExampleReader
from glmix.io.scores import duplicate_uid_message
from glmix.io.storage import qualified, storage_for
from glmix.settings import BadRecordPolicy, Task

BAD_REASONS = ("invalid_label", "invalid_weight", "invalid_offset", "non_finite_feature", "missing_entity_id")
HEADER_BYTES = 1 << 20
# inputs whose rows are numbered are cut into splits of a size that depends on the input alone:
# about NUMBERED_SPLITS of them, within these bounds (Spark's own split size depends on the cores); 16
# splits cost the partitioning job 13% more than 4 on the 1M-row benchmark (README, data jobs)
NUMBERED_SPLITS = 4
NUMBERED_SPLIT_BYTES = (4 << 20, 128 << 20)
_POSITION_BITS = (1 << 33) - 1     # monotonically_increasing_id: partition << 33 | row in the partition


@dataclass(frozen=True)
class InputSpec:
    """What a job reads: where, how the columns are named, which bags and ids it needs."""

    uri: str
    bags: tuple[str, ...]
    columns: ColumnNames = ColumnNames()
    entity_fields: tuple[str, ...] = ()
    task: Task | None = None
    policy: BadRecordPolicy = "fail"
    allow_empty: bool = False  # no rows at all is an error unless set
    dates: DatedDays | None = None  # a dated input: read these days of ROOT/daily/YYYY/MM/DD
    keep_bags: bool = False  # also keep each bag as its own normalized column (scoring needs them apart)
    # sum repeated (name, term) pairs here; jobs that index rows (spark_indexing) leave it to the
    # index lookup, where repeats are found on sorted integers instead of hashed strings
    merge_repeats: bool = True


@dataclass
class LoadedInput:
    frame: DataFrame
    located: DataFrame  # the same rows with ``_file`` (their file), for naming a bad row's file
    observation: Observation
    metrics: list[Column]  # what the observation computes, to count directly when it saw nothing
    spec: InputSpec
    files: list[str]
    _counted: dict[str, int] | None = None

    def good_rows(self) -> DataFrame:
        """The rows a job may use: all of them under ``fail`` (checked afterwards), the good ones under ``drop``."""
        return self.frame if self.spec.policy == "fail" else self.frame.filter(F.col("_bad").isNull())

    def counts(self) -> dict[str, int]:
        """Rows read, repeats merged and bad rows by reason; valid after the job's action ran. Where
        the action never read the input (Spark skips the side of a join whose other side is empty),
        the observation holds nothing and the rows are counted by one more pass."""
        if self._counted is None:
            try:
                observed = self.observation.get
            except Py4JJavaError:   # "assertion failed": no metrics were observed
                row = self.located.agg(*self.metrics).first()
                assert row is not None, "an aggregate has one row"
                observed = row.asDict()
            self._counted = {k: int(v or 0) for k, v in observed.items()}
        return self._counted

    def check(self) -> dict[str, int]:
        """After the action: no rows at all is an error (unless allowed); under ``fail`` raise on the
        first bad row (naming file, record and field)."""
        counts = self.counts()
        if counts["rows_in"] == 0 and not self.spec.allow_empty:
            raise DataError(f"no rows: its {len(self.files)} data file(s) hold no records", path=self.spec.uri)
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
        if path.endswith(".parquet"):
            first = self.located.filter(F.col("_bad").isNotNull() & (F.col("_file") == row["_file"])) \
                .agg(F.min("_record")).first()
            record = None if first is None else first[0]
        else:
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
    return not _label_valid(example.label, spec.task)


def _label_valid(label: float, task: Task | None) -> bool:
    if task == "logistic":
        return label in (0.0, 1.0)
    if task == "poisson":
        return label >= 0
    return True


def header_fields(uri: str) -> dict[str, Any]:
    """Top-level fields of an Avro file (name -> Avro type), from its header only."""
    storage = storage_for(uri)
    with storage.open_read(uri) as stream:
        head = stream.read(HEADER_BYTES)
    try:
        return {f["name"]: f["type"] for f in writer_schema(fastavro.reader(io.BytesIO(head)))["fields"]}
    except Exception as exc:
        raise DataError(f"not a readable Avro file ({exc})", path=uri) from exc


def _may_be_null(avro_type: Any) -> bool:
    return avro_type == "null" or (isinstance(avro_type, list) and "null" in avro_type)


def nullable_fields(spark: SparkSession, fmt: str, files: list[str]) -> dict[str, dict[str, bool]]:
    """Each file's top-level fields and whether they may be null: from each Avro file's header; for
    Parquet, from the footer Spark reads (its columns are nullable as a rule)."""
    if fmt == "avro":
        return {path: {name: _may_be_null(t) for name, t in header_fields(path).items()} for path in files}
    schema = spark.read.parquet(*files).schema
    return {path: {f.name: f.nullable for f in schema.fields} for path in files}


def needs_numbering(uid: str | None, fields: list[dict[str, bool]]) -> bool:
    """Whether some row may lack a uid: none configured, or a file without the field or with a nullable one."""
    return uid is None or any(uid not in names or names[uid] for names in fields)


FORMATS = {".avro": "avro", ".parquet": "parquet"}


def data_files(uri: str, dates: DatedDays | None = None) -> tuple[str, list[str], int]:
    """The input's format, its data files (zero-byte files left out; of a dated input, those of its
    days: one format per input) and their total size."""
    storage = storage_for(uri)
    roots = dates.directories(uri) if dates else [uri]
    entries = [e for root in roots for e in storage.data_file_sizes(root) if e.size]
    by_format = {fmt: [e.uri for e in entries if e.uri.endswith(suffix)] for suffix, fmt in FORMATS.items()}
    found = [fmt for fmt, paths in by_format.items() if paths]
    if not found:
        raise DataError("no .avro or .parquet data files (empty files aside)", path=uri)
    if len(found) > 1:
        raise DataError("holds both .avro and .parquet data files: give each input one format", path=uri)
    return found[0], by_format[found[0]], sum(e.size for e in entries)


def numbered_split_bytes(total_bytes: int) -> int:
    """The split size of a numbered input of ``total_bytes``: the same in every stage that reads it."""
    smallest, largest = NUMBERED_SPLIT_BYTES
    return min(largest, max(smallest, -(-total_bytes // NUMBERED_SPLITS)))


def fixed_split_read(spark: SparkSession, fmt: str, files: list[str], split_bytes: int) -> DataFrame:
    """Read ``files`` cut at fixed offsets, one split per task (an open cost equal to the split size
    stops Spark from packing small files together), so a row's position in its split is the same in
    every stage whatever the cluster's size. A scan takes its split settings from the session its
    relation was made in, so the files are opened in a session with those settings and the plan is
    then bound to ``spark`` (through Spark's ``Dataset.ofRows``: observations and the job's other
    settings belong to ``spark``)."""
    reader = spark.newSession()
    reader.conf.set("spark.sql.files.maxPartitionBytes", str(split_bytes))
    reader.conf.set("spark.sql.files.openCostInBytes", str(split_bytes))
    plan = reader.read.format(fmt).load(files)._jdf.queryExecution().analyzed()
    jvm = spark._jvm
    assert jvm is not None, "a classic (not Spark Connect) session"
    return DataFrame(jvm.org.apache.spark.sql.classic.Dataset.ofRows(spark._jsparkSession, plan), spark)


def row_number_column(root: str, fmt: str) -> Column:
    """``<file relative to root>#<position>`` (``@<split start>`` added past a file's first split).
    For Avro, valid only on a fixed-split scan before any filter (see :func:`fixed_split_read`)."""
    path = F.regexp_replace(F.col("_metadata.file_path"), r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?", "")
    prefix = urlparse(root).path.rstrip("/") + "/"
    relative = F.when(path.startswith(prefix), F.substring(path, len(prefix) + 1, 1 << 30)).otherwise(path)
    if fmt == "parquet":
        return F.concat(relative, F.lit("#"), F.col("_metadata.row_index").cast("string"))
    start = F.col("_metadata.file_block_start")
    position = F.monotonically_increasing_id().bitwiseAND(_POSITION_BITS).cast("string")
    return F.when(start == 0, F.concat(relative, F.lit("#"), position)) \
        .otherwise(F.concat(relative, F.lit("@"), start.cast("string"), F.lit("#"), position))


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
    """Read and normalize; validate the schema of every file up front (cheap: headers only). A
    plain path is local (Spark would take it on its default file system)."""
    spec = replace(spec, uri=qualified(spec.uri))
    fmt, files, total_bytes = data_files(spec.uri, spec.dates)
    field_types = nullable_fields(spark, fmt, files)
    c = spec.columns
    for path, names in field_types.items():
        response = c.response or next((r for r in RESPONSE_CANDIDATES if r in names), None)
        if response is None or response not in names:
            raise DataError(f"schema mismatch: no usable label field (expected "
                            f"{c.response or ' or '.join(RESPONSE_CANDIDATES)})", path=path)
        missing = sorted(set(spec.bags) - set(names))
        if missing:
            raise DataError(f"schema mismatch: field(s) {', '.join(missing)} not in the file's schema",
                            path=path, field=missing[0])
    numbered = needs_numbering(c.uid, list(field_types.values()))
    if numbered and fmt == "avro":
        raw = fixed_split_read(spark, fmt, files, numbered_split_bytes(total_bytes))
    else:
        raw = spark.read.format(fmt).load(files)
    root = spec.uri if storage_for(spec.uri).is_dir(spec.uri) else spec.uri.rsplit("/", 1)[0]
    given = id_column(raw, c.uid, c.metadata_map) if c.uid is not None else F.lit(None).cast("string")
    uid = F.coalesce(F.when(given != "", given), row_number_column(root, fmt)) if numbered else given
    response = c.response or next(r for r in RESPONSE_CANDIDATES if r in raw.columns)
    label = number_column(raw, response)
    weight = number_column(raw, c.weight) if c.weight in raw.columns else F.lit(None).cast("double")
    offset = number_column(raw, c.offset) if c.offset in raw.columns else F.lit(None).cast("double")
    ids = {name: id_column(raw, name, c.metadata_map) for name in spec.entity_fields}
    columns = [
        uid.alias("uid"),
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
    located = raw.select(*columns, F.col("_metadata.file_path").alias("_file"),
                         (F.col("_metadata.row_index") if fmt == "parquet" else F.lit(None)).alias("_record")) \
        .withColumn("_bad", bad).withColumn("_bad_field", bad_field)
    observation = Observation(f"input-{id(frame)}")
    metrics = [F.count(F.lit(1)).alias("rows_in")]
    if spec.merge_repeats:
        metrics.append(F.sum(F.col("_raw_nnz") - F.size("features")).alias("repeated_features_merged"))
    metrics += [F.sum(F.when(F.col("_bad") == r, 1).otherwise(0)).alias(f"bad_{r}") for r in BAD_REASONS]
    helpers = ["_raw_nnz"] + [f"_non_finite_{i}" for i in range(len(spec.bags))]
    frame = frame.observe(observation, *metrics).drop(*helpers)
    return LoadedInput(frame, located, observation, metrics, spec, files)


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
    return checks


def read_scores(spark: SparkSession, uri: str, exclude: str | None = None, check_unique: bool = True) -> DataFrame:
    """Scores of the other coordinates by uid: ``uid, score`` Parquet/Avro, or ScoringResult Avro whose
    ``coordinateScores`` are summed leaving out ``exclude`` (the coordinate being trained). A repeated
    uid fails here (a pass over the scores), unless ``check_unique`` is off: the caller counts them
    while joining (:func:`read_summed_scores`)."""
    uri = qualified(uri)
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
    scores = frame.select(F.col("uid").cast("string"), F.col("score").cast("double").alias("_score"))
    repeated = scores.groupBy("uid").count().filter("count > 1").first() if check_unique else None
    if repeated is not None:
        raise DataError(duplicate_uid_message(repeated["uid"], repeated["count"]), path=uri, field="uid")
    return scores


def read_summed_scores(spark: SparkSession, uris: list[str], exclude: str | None = None) -> DataFrame:
    """``uid, _score, _repeats``, one row per uid: the sum of several coordinates' scores (each a
    :func:`read_scores` source). A uid missing from any source gets a null ``_score``, so callers
    count it as unscored rather than train on a partial sum. ``_repeats`` counts the uid's rows beyond
    one per source (a uid repeated in a source: its data had the uid twice); callers count them while
    joining, so the scores are not read once more just to check them."""
    # each source a bit: the sources a uid has are a compiled bit_or (count_distinct would expand every row)
    sources = [read_scores(spark, uri, exclude, check_unique=False).withColumn("_source", F.lit(1 << k).cast("long"))
               for k, uri in enumerate(uris)]
    union = sources[0]
    for source in sources[1:]:
        union = union.unionByName(source)
    summed = union.groupBy("uid").agg(F.sum("_score").alias("_score"), F.count(F.lit(1)).alias("_rows"),
                                      F.bit_or("_source").alias("_sources"))
    found = F.bit_count("_sources")
    return summed.select("uid", F.when(found == len(uris), F.col("_score")).alias("_score"),
                         (F.col("_rows") - found).alias("_repeats"))
