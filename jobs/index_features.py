"""Feature indexing: build a shard's (name, term) -> index map and per-feature statistics.

    spark-submit jobs/index_features.py --input DATA --output OUT --shard-name global \
        --bags features userFeatures [--min-count 5] [--whitelist FILE] [--no-intercept]
    spark-submit jobs/index_features.py --input DATA --output ROOT \
        --shards '[{"name": "global", "bags": ["features"]}, {"name": "user", "bags": ["userFeatures"]}]'

Output (published atomically): OUT/index/*.parquet (name, term, index), OUT/summary/*.avro
(FeatureSummary), OUT/_shard.json, OUT/_report.json; with ``--shards`` (FeatureShard objects, as
in a GAME config) one such directory per shard, ROOT/<name>/, from one read of the data (rows are
then checked on every shard's bags). Nothing is collected on the driver: the distinct features are
aggregated, filtered, sorted and numbered (zipWithIndex) on the executors.
"""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from glmix.data.feature_index import write_shard_meta
from glmix.errors import ConfigError
from glmix.io.dated import DatedDays
from glmix.io.examples import ColumnNames
from glmix.io.schemas import INTERCEPT_NAME, raw_schema
from glmix.io.storage import join, publish_atomically, qualified, storage_for
from glmix.settings import BadRecordPolicy, FeatureShard
from glmix.spark.input import InputSpec, dropped_by_reason, kept_bag_column, load_examples, merged_features
from glmix.spark.job import JobReport, run_main
from glmix.spark.job_args import IndexArgs


def read_whitelist(spark: SparkSession, uri: str) -> DataFrame:
    """Whitelist lines are 'name<TAB>term' or just 'name' (term '')."""
    lines = storage_for(uri).read_bytes(uri).decode().splitlines()
    keys = [(parts[0], parts[1] if len(parts) > 1 else "") for line in lines if line.strip()
            for parts in [line.rstrip("\n").split("\t")]]
    return spark.createDataFrame(keys, "name string, term string")


def index_features(spark: SparkSession, data: str, output: str, shard: FeatureShard,
                   columns: ColumnNames = ColumnNames(), policy: BadRecordPolicy = "fail",
                   dates: DatedDays | None = None) -> dict[str, Any]:
    """Index one shard into ``output``."""
    return index_shards(spark, data, {shard.name: output}, [shard], columns, policy, dates)[shard.name]


def index_shards(spark: SparkSession, data: str, outputs: dict[str, str], shards: list[FeatureShard],
                 columns: ColumnNames = ColumnNames(), policy: BadRecordPolicy = "fail",
                 dates: DatedDays | None = None) -> dict[str, dict[str, Any]]:
    """Index several shards of one dataset in one pass: the data is read once and every shard's
    features are counted in one aggregation (a job per shard would repeat both). Rows are checked
    on the union of the shards' bags. Returns each shard's report."""
    data = qualified(data)
    bags = tuple(dict.fromkeys(b for s in shards for b in s.bags))
    loaded = load_examples(spark, InputSpec(uri=data, bags=bags, columns=columns, policy=policy, keep_bags=True,
                                            merge_repeats=False, dates=dates))
    rows = loaded.good_rows()
    merged = [merged_features(tuple(kept_bag_column(b) for b in s.bags), rows.schema) for s in shards]
    raw_sizes = [F.size(F.concat(*[F.col(kept_bag_column(b)) for b in s.bags])) for s in shards]
    repeats = Observation(f"repeats-{id(rows)}")
    # per row: (shard, its merged features) for every shard, and per shard the repeats its merge summed;
    # two explodes (compiled) rather than tagging every feature in a lambda (interpreted)
    per_shard = F.array(*[F.struct(F.lit(k).alias("shard"), features.alias("features"))
                          for k, features in enumerate(merged)])
    tagged = rows.select(per_shard.alias("s"), *[(size - F.size(features)).alias(f"_repeats_{k}")
                                                 for k, (size, features) in enumerate(zip(raw_sizes, merged,
                                                                                          strict=True))])
    tagged = tagged.observe(repeats, *[F.sum(f"_repeats_{k}").alias(str(k)) for k in range(len(shards))])
    exploded = (tagged.select(F.inline("s")).select("shard", F.explode("features").alias("f"))
                .select("shard", "f.name", F.coalesce("f.term", F.lit("")).alias("term"), "f.value"))
    stats = exploded.groupBy("shard", "name", "term").agg(
        F.count(F.lit(1)).alias("present"), F.sum(F.when(F.col("value") != 0, 1).otherwise(0)).alias("nnz"),
        F.sum("value").alias("sum"), F.sum(F.col("value") * F.col("value")).alias("sumsq"),
        F.min("value").alias("min_present"), F.max("value").alias("max_present")).cache()
    distinct = {r["shard"]: r["count"] for r in stats.groupBy("shard").count().collect()}  # the action
    counts = loaded.check()
    used = counts["rows_in"] - sum(v for k, v in counts.items() if k.startswith("bad_"))
    repeated = repeats.get
    reports = {}
    for k, shard in enumerate(shards):
        report = JobReport("index_features", {"input": data, "output": qualified(outputs[shard.name]),
                                              "shard": shard.model_dump(), "policy": policy})
        report.counters.update({"rows_in": counts["rows_in"], "rows_used": used, "dropped": dropped_by_reason(counts),
                                "repeated_features_merged": int(repeated[str(k)] or 0),
                                "distinct_features": int(distinct.get(k, 0))})
        _publish_index(spark, stats.filter(F.col("shard") == k).drop("shard"), used, shard,
                       qualified(outputs[shard.name]), report)
        reports[shard.name] = report.to_dict()
    stats.unpersist()
    return reports


def _publish_index(spark: SparkSession, stats: DataFrame, rows: int, shard: FeatureShard, output: str,
                   report: JobReport) -> None:
    """One shard's index (features seen in at least min_count rows, whitelisted, numbered in (name,
    term) order after the intercept) and FeatureSummary, published atomically into ``output``."""
    kept = stats.filter(F.col("present") >= shard.min_count)
    if shard.whitelist:
        kept = kept.join(F.broadcast(read_whitelist(spark, shard.whitelist)), on=["name", "term"], how="left_semi")
    first = 1 if shard.intercept else 0
    numbered = kept.select("name", "term").orderBy("name", "term").rdd.zipWithIndex().map(
        lambda pair: (pair[0][0], pair[0][1], pair[1] + first))
    index = spark.createDataFrame(numbered, StructType([StructField("name", StringType()),
                                                        StructField("term", StringType()),
                                                        StructField("index", LongType())]))
    if shard.intercept:
        index = spark.createDataFrame([(INTERCEPT_NAME, "", 0)], index.schema).unionByName(index)

    n = F.lit(float(max(rows, 1)))
    mean = F.col("sum") / n
    has_zeros = F.col("nnz") < F.lit(rows)
    # coalesce(..., literal) makes every column non-nullable, as the FeatureSummary schema wants
    summary = kept.select(
        F.coalesce("name", F.lit("")).alias("name"), F.coalesce("term", F.lit("")).alias("term"),
        F.lit(rows).cast("long").alias("count"), F.coalesce(mean, F.lit(0.0)).alias("mean"),
        F.coalesce(F.greatest(F.col("sumsq") / n - mean * mean, F.lit(0.0)), F.lit(0.0)).alias("variance"),
        F.coalesce(F.when(has_zeros, F.least("min_present", F.lit(0.0))).otherwise(F.col("min_present")),
                   F.lit(0.0)).alias("min"),
        F.coalesce(F.when(has_zeros, F.greatest("max_present", F.lit(0.0))).otherwise(F.col("max_present")),
                   F.lit(0.0)).alias("max"),
        F.coalesce(F.col("nnz").cast("long"), F.lit(0).cast("long")).alias("nnz"))
    with publish_atomically(output) as tmp:
        index.coalesce(max(1, spark.sparkContext.defaultParallelism)).write.parquet(join(tmp, "index"))
        summary.write.format("avro").option("avroSchema", json.dumps(raw_schema("FeatureSummary"))) \
            .save(join(tmp, "summary"))
        num_features = spark.read.parquet(join(tmp, "index")).count()
        write_shard_meta(tmp, shard, num_features)
        distinct_features = report.counters["distinct_features"]
        report.counters.update({"features_kept": num_features - first,
                                "features_filtered": distinct_features - (num_features - first),
                                "num_features": num_features})
        report.write_into(tmp)


ARGS = IndexArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: IndexArgs) -> dict[str, Any]:
    columns = args.columns
    if args.shards:
        if args.shard_name or args.bags:
            raise ConfigError("--shards describes every shard: drop --shard-name and --bags")
        outputs = {s.name: join(args.output, s.name) for s in args.shards}
        return index_shards(spark, args.input, outputs, list(args.shards), columns, args.bad_records, args.dated())
    if not args.shard_name or not args.bags:
        raise ConfigError("give --shard-name and --bags, or --shards")
    shard = FeatureShard.parse({"name": args.shard_name, "bags": args.bags, "intercept": args.intercept,
                                "min_count": args.min_count, "whitelist": args.whitelist}, where="shard")
    return index_features(spark, args.input, args.output, shard, columns, args.bad_records, args.dated())


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
