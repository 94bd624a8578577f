"""Feature indexing: build a shard's (name, term) -> index map and per-feature statistics.

    spark-submit jobs/index_features.py --input DATA --output OUT --shard-name global \
        --bags features userFeatures [--min-count 5] [--whitelist FILE] [--no-intercept]

Output (published atomically): OUT/index/*.parquet (name, term, index), OUT/summary/*.avro
(FeatureSummary), OUT/_shard.json, OUT/_report.json. Nothing is collected on the driver: the
distinct features are aggregated, filtered, sorted and numbered (zipWithIndex) on the executors.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from glmix.config import FeatureShard
from glmix.examples import ColumnNames
from glmix.feature_index import write_shard_meta
from glmix.job import JobReport, add_spark_arguments, job_parser, run_main
from glmix.schemas import INTERCEPT_NAME, raw_schema
from glmix.spark_input import InputSpec, dropped_by_reason, load_examples
from glmix.storage import join, publish_atomically, qualified, storage_for


def read_whitelist(spark: SparkSession, uri: str) -> DataFrame:
    """Whitelist lines are 'name<TAB>term' or just 'name' (term '')."""
    lines = storage_for(uri).read_bytes(uri).decode().splitlines()
    keys = [(parts[0], parts[1] if len(parts) > 1 else "") for line in lines if line.strip()
            for parts in [line.rstrip("\n").split("\t")]]
    return spark.createDataFrame(keys, "name string, term string")


def index_features(spark: SparkSession, data: str, output: str, shard: FeatureShard,
                   columns: ColumnNames = ColumnNames(), policy: str = "fail") -> dict[str, Any]:
    data, output = (qualified(data), qualified(output))
    report = JobReport("index_features", {"input": data, "output": output, "shard": shard.model_dump(),
                                          "policy": policy})
    loaded = load_examples(spark, InputSpec(uri=data, bags=shard.bags, columns=columns, policy=policy))
    exploded = loaded.good_rows().select(F.explode("features").alias("f")).select(
        "f.name", F.coalesce("f.term", F.lit("")).alias("term"), "f.value")
    stats = exploded.groupBy("name", "term").agg(
        F.count(F.lit(1)).alias("present"), F.sum(F.when(F.col("value") != 0, 1).otherwise(0)).alias("nnz"),
        F.sum("value").alias("sum"), F.sum(F.col("value") * F.col("value")).alias("sumsq"),
        F.min("value").alias("min_present"), F.max("value").alias("max_present")).cache()
    distinct_features = stats.count()  # the action: the observation's counters are ready after it
    counts = loaded.check()
    rows = counts["rows_in"] - sum(v for k, v in counts.items() if k.startswith("bad_"))

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
        report.counters.update({
            "rows_in": counts["rows_in"], "rows_used": rows,
            "dropped": dropped_by_reason(counts),
            "repeated_features_merged": counts["repeated_features_merged"],
            "distinct_features": distinct_features, "features_kept": num_features - first,
            "features_filtered": distinct_features - (num_features - first), "num_features": num_features})
        report.write_into(tmp)
    stats.unpersist()
    return report.to_dict()


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("index_features", __doc__)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--shard-name", required=True)
    parser.add_argument("--bags", nargs="+", required=True)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--whitelist")
    parser.add_argument("--no-intercept", action="store_true")
    parser.add_argument("--response", help="label column (default: label or response)")
    parser.add_argument("--bad-records", choices=["fail", "drop"], default="fail")
    add_spark_arguments(parser)
    return parser


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    shard = FeatureShard.parse({"name": args.shard_name, "bags": args.bags, "intercept": not args.no_intercept,
                                "min_count": args.min_count, "whitelist": args.whitelist}, where="shard")
    return index_features(spark, args.input, args.output, shard, ColumnNames(response=args.response),
                          args.bad_records)


if __name__ == "__main__":
    raise SystemExit(run_main(build_parser(), run))
