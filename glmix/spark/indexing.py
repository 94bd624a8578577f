"""Turning normalized examples into indexed sparse rows with a shard's index map (Spark).

Each row's features are looked up in the index where the row is, in Arrow (``mapInArrow``): a
vectorized hash lookup of every (name, term) of a batch against the index keys, shipped to the
workers once as a broadcast. No explode, no join, no regrouping shuffle: the rows keep their
partitioning, and a job's only shuffle is the one it asks for (balanced files, grouping by
entity). The index is already held whole by the driver (FeatureIndex.load), so broadcasting it
adds no new limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType

from glmix.data.feature_index import FeatureIndex

KEY_SEPARATOR = "\u0001"
NOT_INDEXED = "_not_indexed"
REPEATED = "_repeated"


def index_keys(index: FeatureIndex) -> pa.Array:
    """``name SEP term`` of every feature, position = column index."""
    return pa.array([f"{n}{KEY_SEPARATOR}{t}" for n, t in zip(index.names.tolist(), index.terms.tolist(),
                                                                 strict=True)], pa.string())


def looked_up(features: pa.ListArray, keys: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray, pa.Array]:
    """Every (name, term, value) of a list-of-structs column, flattened: its row, its position in
    ``keys`` (null when absent), its value (null as 0) and its name (null for a null entry)."""
    lengths = pc.fill_null(pc.list_value_length(features), 0).to_numpy(zero_copy_only=False)
    flat = features.flatten()
    names = flat.field("name")
    found = pc.index_in(pc.binary_join_element_wise(names, pc.fill_null(flat.field("term"), ""), KEY_SEPARATOR),
                        value_set=keys)
    values = pc.fill_null(flat.field("value"), 0.0).to_numpy(zero_copy_only=False)
    return np.repeat(np.arange(len(features)), lengths), found, values, names


def index_batch(batch: pa.RecordBatch, keys: pa.Array, intercept: bool, keep: list[str]) -> pa.RecordBatch:
    """``keep`` columns plus ``indices`` (sorted) and ``values`` of one batch; features not in the index
    or with value 0 are left out, and counted per row (non-zero or not) in ``_not_indexed``. A feature
    repeated in a row is summed into one entry (counted in ``_repeated``): sorting by (row, column)
    puts repeats side by side, so this costs one comparison per non-zero."""
    rows = len(batch)
    row_of, found, values, names = looked_up(batch.column("features"), keys)
    unknown = pc.is_null(found).to_numpy(zero_copy_only=False)
    missing = unknown & pc.is_valid(names).to_numpy(zero_copy_only=False)
    used = ~unknown & (values != 0)
    row, column, value = row_of[used], pc.fill_null(found, 0).to_numpy(zero_copy_only=False)[used], values[used]
    if intercept:
        row = np.concatenate([np.arange(rows), row])
        column = np.concatenate([np.zeros(rows, dtype=column.dtype), column])
        value = np.concatenate([np.ones(rows), value])
    order = np.lexsort((column, row))
    row, column, value = row[order], column[order], value[order]
    first = np.ones(len(row), dtype=bool)
    first[1:] = (row[1:] != row[:-1]) | (column[1:] != column[:-1])
    repeated = np.bincount(row[~first], minlength=rows)
    if not first.all():
        starts = np.flatnonzero(first)
        row, column, value = row[starts], column[starts], np.add.reduceat(value, starts)
        nonzero = value != 0
        row, column, value = row[nonzero], column[nonzero], value[nonzero]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=rows))]).astype(np.int32)
    columns = {name: batch.column(name) for name in keep}
    columns["indices"] = pa.ListArray.from_arrays(offsets, pa.array(column, pa.int32()))
    columns["values"] = pa.ListArray.from_arrays(offsets, pa.array(value, pa.float64()))
    columns[NOT_INDEXED] = pa.array(np.bincount(row_of[missing], minlength=rows).astype(np.int32))
    columns[REPEATED] = pa.array(repeated.astype(np.int32))
    return pa.RecordBatch.from_pydict(columns)


def _index_batches(batches: Iterable[pa.RecordBatch], keys: Broadcast, intercept: bool,
                   keep: list[str]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield index_batch(batch, keys.value, intercept, keep)


def index_rows(spark: SparkSession, frame: DataFrame, index: FeatureIndex,
               keep: list[str]) -> tuple[DataFrame, Observation]:
    """Rows with ``indices`` (sorted int array, the intercept first when the shard has one) and
    ``values``, keeping the ``keep`` columns. The returned observation counts features missing from
    the index (filtered by min-count or whitelist) as ``feature_values_not_indexed`` and repeated
    features summed into one entry as ``repeated_features_merged``; ``frame`` may therefore come from
    load_examples with ``merge_repeats=False``."""
    keys = spark.sparkContext.broadcast(index_keys(index))
    intercept = index.shard.intercept
    kept = frame.select(*keep, "features")
    schema = StructType([*[kept.schema[name] for name in keep],
                         StructField("indices", ArrayType(IntegerType(), False)),
                         StructField("values", ArrayType(DoubleType(), False)),
                         StructField(NOT_INDEXED, IntegerType(), False),
                         StructField(REPEATED, IntegerType(), False)])
    indexed = kept.mapInArrow(lambda batches: _index_batches(batches, keys, intercept, keep), schema)
    observation = Observation(f"indexing-{id(indexed)}")
    indexed = indexed.observe(observation, F.sum(NOT_INDEXED).alias("feature_values_not_indexed"),
                              F.sum(REPEATED).alias("repeated_features_merged"))
    return indexed.drop(NOT_INDEXED, REPEATED), observation


def indexing_counts(observation: Observation) -> dict[str, int]:
    """The index_rows counters for a job report (valid after the job's action ran)."""
    return {name: int(observation.get.get(name) or 0)
            for name in ("feature_values_not_indexed", "repeated_features_merged")}
