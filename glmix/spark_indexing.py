"""Turning normalized examples into indexed sparse rows with a shard's index map (Spark)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from glmix.storage import join

BROADCAST_MAX_FEATURES = 2_000_000


def load_index_frame(spark: SparkSession, index_dir: str) -> DataFrame:
    return spark.read.parquet(join(index_dir, "index")).select("name", "term", F.col("index").cast("int"))


def index_rows(frame: DataFrame, index: DataFrame, num_features: int, intercept: bool,
               keep: list[str]) -> tuple[DataFrame, Observation]:
    """Rows with ``indices`` (sorted int array) and ``values``, keeping the ``keep`` columns.

    One shuffle (grouping back by row); the index is broadcast when it is small enough, so the
    join itself does not shuffle. Features missing from the index (filtered by min-count or
    whitelist) are counted in the returned observation as ``feature_values_not_indexed``.
    """
    rows = frame.withColumn("_row", F.monotonically_increasing_id())
    exploded = rows.select("_row", *keep, F.explode_outer("features").alias("f")).select(
        "_row", *keep, F.col("f.name").alias("name"), F.col("f.term").alias("term"), F.col("f.value").alias("value"))
    lookup = F.broadcast(index) if num_features <= BROADCAST_MAX_FEATURES else index
    joined = exploded.join(lookup, on=["name", "term"], how="left")
    observation = Observation(f"indexing-{id(joined)}")
    joined = joined.observe(observation, F.sum(F.when(F.col("name").isNotNull() & F.col("index").isNull(), 1)
                                               .otherwise(0)).alias("feature_values_not_indexed"))
    entries = F.when(F.col("index").isNotNull() & (F.col("value") != 0), F.struct("index", "value"))
    grouped = joined.groupBy("_row", *keep).agg(F.array_sort(F.collect_list(entries)).alias("_entries"))
    indices = F.transform("_entries", lambda e: e["index"])
    values = F.transform("_entries", lambda e: e["value"])
    if intercept:
        indices = F.concat(F.array(F.lit(0)), indices)
        values = F.concat(F.array(F.lit(1.0)), values)
    return grouped.select(*keep, indices.alias("indices"), values.alias("values")), observation
