"""Random-effect partitioning: group rows by entity, bound, project, and bin-pack into partitions.

    spark-submit jobs/partition_random_effect.py --input DATA --entity-field userId --index INDEX_DIR \
        --output OUT [--offsets SCORES] [--lower-bound 5] [--upper-bound 1000] [--partitions 8]

For one random-effect type (an entity-id field):

* the current offsets (scores of the other coordinates: Parquet or Avro with ``uid`` and
  ``score``) are joined by uid and added to each row's own offset; a row without a score is a bad
  record (``missing_offset``);
* entities with fewer rows than the *active-data lower bound* get no model: their rows are written
  as passive data (for scoring);
* entities with more rows than the *upper bound* are down-sampled to exactly the bound, reproducibly
  (rows ranked by a hash of (uid, seed)), and the kept rows' weights scaled by n / bound, as Photon
  ML does; the rows left out are passive data too (the trainer scores them with the entity's model);
* each entity is projected onto the features present in its own rows: ``features`` lists them
  (sorted global indices); a row's ``indices`` are global too, so its local columns are
  ``searchsorted(features, indices)`` (the trainer's, vectorized; Spark has no compiled lookup);
* entities are packed into partitions by row count: sorted by size and dealt in a snake order
  (0..P-1, P-1..0, ...), so one heavy entity cannot make a straggler.

Output (published atomically): OUT/active/partition=K/*.parquet (one row per entity: ``entity_id,
n_rows, sampled, features, uids, labels, weights, offsets, row_nnz, indices, vals``),
OUT/passive/*.parquet (``uid, entity_id, label, weight, offset, indices, values``: the rows no model
trains on),
OUT/_partitions.json, OUT/_shard.json, OUT/_report.json.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from glmix.errors import DataError
from glmix.examples import ColumnNames
from glmix.feature_index import FeatureIndex, write_shard_meta
from glmix.job import JobReport, add_spark_arguments, job_parser, run_main
from glmix.spark_indexing import index_rows, indexing_counts
from glmix.spark_input import InputSpec, dropped_by_reason, load_examples, read_scores
from glmix.storage import join, publish_atomically, qualified, storage_for

ROW_COLUMNS = ["uid", "entity_id", "label", "weight", "offset"]
ROW_FIELDS = ["uid", "label", "weight", "offset", "indices", "values"]  # of a row inside its entity


def snake_partition(rank: Column, partitions: int) -> Column:
    """Deal ranked items 0..P-1 then P-1..0, ...: greedy-like balance without a global view."""
    block, position = F.floor(rank / partitions), rank % partitions
    return F.when(block % 2 == 0, position).otherwise(partitions - 1 - position).cast("int")


def partition_random_effect(spark: SparkSession, data: str, entity_field: str, index_dir: str, output: str,
                            offsets: str | None = None, lower_bound: int = 1, upper_bound: int | None = None,
                            partitions: int = 4, seed: int = 0, columns: ColumnNames = ColumnNames(),
                            task: str | None = None, policy: str = "fail",
                            offsets_exclude: str | None = None) -> dict[str, Any]:
    if lower_bound < 1 or partitions < 1 or (upper_bound is not None and upper_bound < lower_bound):
        raise ValueError("need lower_bound >= 1, partitions >= 1 and upper_bound >= lower_bound")
    index_meta = FeatureIndex.load(index_dir)
    shard = index_meta.shard
    data, index_dir, output = (qualified(data), qualified(index_dir), qualified(output))
    offsets = qualified(offsets) if offsets else None
    report = JobReport("partition_random_effect", {
        "input": data, "entity_field": entity_field, "index": index_dir, "output": output, "offsets": offsets,
        "lower_bound": lower_bound, "upper_bound": upper_bound, "partitions": partitions, "seed": seed,
        "task": task, "policy": policy, "offsets_exclude": offsets_exclude})
    loaded = load_examples(spark, InputSpec(uri=data, bags=shard.bags, columns=columns, entity_fields=(entity_field,),
                                            task=task, require_uid=offsets is not None, policy=policy,
                                            merge_repeats=False))
    rows = loaded.good_rows().withColumnRenamed(entity_field, "entity_id")
    missing_offsets = scored = None
    if offsets is not None:
        scored = rows.join(read_scores(spark, offsets, offsets_exclude), on="uid", how="left")
        missing_offsets = Observation(f"offsets-{id(scored)}")
        rows = scored.observe(missing_offsets, F.sum(F.when(F.col("_score").isNull(), 1).otherwise(0)).alias("n"))
        if policy == "drop":
            rows = rows.filter(F.col("_score").isNotNull())
        rows = rows.withColumn("offset", F.col("offset") + F.coalesce("_score", F.lit(0.0))).drop("_score")

    indexed, indexing = index_rows(spark, rows, index_meta, ROW_COLUMNS)
    # one shuffle: every entity's rows together; active and passive outputs both derive from it (cached).
    # uid leads the row struct, so sorting an entity's rows (a compiled sort_array) orders them by uid.
    row = F.struct(*ROW_FIELDS, F.size("indices").alias("nnz"))
    grouped = indexed.groupBy("entity_id").agg(F.collect_list(row).alias("_rows")) \
        .withColumn("n_rows_before", F.size("_rows")).cache()
    passive_rows = grouped.filter(F.col("n_rows_before") < lower_bound).select("entity_id", "_rows")
    active = grouped.filter(F.col("n_rows_before") >= lower_bound)
    n_rows = F.col("n_rows_before")
    if upper_bound is not None:
        # down-sampling: the rows of smallest (hash(uid, seed), uid), weights scaled to keep the entity's total
        # (lambdas, interpreted, but only for the entities over the bound); the others become passive rows
        scale = n_rows / F.lit(upper_bound)
        by_hash = F.sort_array(F.transform("_rows", lambda r: F.struct(F.xxhash64(r["uid"], F.lit(seed)).alias("h"),
                                                                        r.alias("r"))))
        kept = F.transform(F.slice(by_hash, 1, upper_bound), lambda s: s["r"].withField("weight", s["r"]["weight"] * scale))
        removed = F.transform(F.slice(by_hash, upper_bound + 1, n_rows - upper_bound), lambda s: s["r"])
        passive_rows = passive_rows.unionByName(
            active.filter(n_rows > upper_bound).select("entity_id", removed.alias("_rows")))
        active = active.withColumn("_rows", F.when(n_rows > upper_bound, kept).otherwise(F.col("_rows")))
        n_rows = F.least(n_rows, F.lit(upper_bound))
    passive = (passive_rows.select("entity_id", F.explode("_rows").alias("r"))
               .select("r.uid", "entity_id", "r.label", "r.weight", "r.offset", "r.indices", "r.values"))
    entities = _entity_blocks(active)

    with publish_atomically(output) as tmp:
        # one task ranks all entities (two small columns per entity), largest first
        rank = F.row_number().over(Window.orderBy(F.desc("n_rows"), "entity_id")) - 1
        assignment = active.select("entity_id", n_rows.alias("n_rows")).select(
            "entity_id", "n_rows", snake_partition(rank, partitions).alias("partition"))
        (entities.join(assignment.drop("n_rows"), "entity_id").repartition("partition")
         .sortWithinPartitions("entity_id").write.partitionBy("partition").parquet(join(tmp, "active")))
        counts = loaded.check()
        n_missing = int((missing_offsets.get.get("n") if missing_offsets else 0) or 0)
        if n_missing and policy == "fail":
            example = scored.filter(F.col("_score").isNull()).select("uid").first()
            raise DataError(f"{n_missing} row(s) have no score in the offsets (e.g. uid "
                            f"{example['uid'] if example else '?'}); policy 'fail'", path=offsets, field="uid")
        # the report's numbers come from the cached entity sizes (two int columns), not from re-reading outputs
        is_passive = F.col("n_rows_before") < lower_bound
        totals = grouped.agg(
            F.count_if(~is_passive).alias("active"), F.count_if(is_passive).alias("passive"),
            F.sum(F.when(is_passive, F.col("n_rows_before"))).alias("rows_passive"),
            F.sum(F.when(~is_passive, F.col("n_rows_before"))).alias("rows_before"),
            F.sum(F.when(~is_passive, n_rows)).alias("rows"),
            F.count_if(~is_passive & (n_rows < F.col("n_rows_before"))).alias("sampled")).first()
        (passive if totals["passive"] or totals["sampled"] else passive.limit(0)).write.parquet(join(tmp, "passive"))
        per_partition = (assignment.groupBy("partition").agg(F.count(F.lit(1)).alias("entities"),
                                                             F.sum("n_rows").alias("rows"))
                         .orderBy("partition").collect())
        partition_list = [{"partition": r["partition"], "path": f"active/partition={r['partition']}",
                           "entities": r["entities"], "rows": int(r["rows"])} for r in per_partition]
        storage_for(tmp).write_bytes(join(tmp, "_partitions.json"), json.dumps(partition_list, indent=2).encode())
        write_shard_meta(tmp, shard, index_meta.size)
        dropped = dropped_by_reason(counts)
        if n_missing:
            dropped["missing_offset"] = n_missing
        row_sizes = [p["rows"] for p in partition_list]
        report.counters.update({
            "rows_in": counts["rows_in"], "dropped": dropped,
            **indexing_counts(indexing),
            "entities_active": int(totals["active"]),
            "entities_passive": int(totals["passive"]),
            "entities_down_sampled": int(totals["sampled"]),
            "rows_active": int(totals["rows"] or 0),
            "rows_removed_by_down_sampling": int((totals["rows_before"] or 0) - (totals["rows"] or 0)),
            "rows_passive": int(totals["rows_passive"] or 0),
            "partitions": len(partition_list),
            "partition_rows": {"min": min(row_sizes, default=0), "max": max(row_sizes, default=0),
                               "mean": sum(row_sizes) / max(1, len(row_sizes))}})
        report.write_into(tmp)
        grouped.unpersist()
    return report.to_dict()


def _entity_blocks(active: DataFrame) -> DataFrame:
    """One row per entity: rows sorted by uid and the entity's projection (compiled expressions only:
    field access on the array of rows, no lambdas)."""
    blocks = active.select("entity_id", "n_rows_before", F.sort_array("_rows").alias("rows"))
    return blocks.select(
        "entity_id", F.size("rows").alias("n_rows"), "n_rows_before",
        (F.col("n_rows_before") > F.size("rows")).alias("sampled"),
        F.sort_array(F.array_distinct(F.flatten("rows.indices"))).alias("features"),
        F.col("rows.uid").alias("uids"), F.col("rows.label").alias("labels"),
        F.col("rows.weight").alias("weights"), F.col("rows.offset").alias("offsets"),
        F.col("rows.nnz").alias("row_nnz"), F.flatten("rows.indices").alias("indices"),
        F.flatten("rows.values").alias("vals"))


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("partition_random_effect", __doc__)
    parser.add_argument("--input", required=True)
    parser.add_argument("--entity-field", required=True, help="e.g. userId (top-level field or metadataMap key)")
    parser.add_argument("--index", required=True, help="output directory of index_features for the shard")
    parser.add_argument("--output", required=True)
    parser.add_argument("--offsets", help="scores of the other coordinates (uid, score), or ScoringResult Avro")
    parser.add_argument("--offsets-exclude", metavar="COORDINATE",
                        help="with ScoringResult offsets: the coordinate being trained, left out of the sum")
    parser.add_argument("--lower-bound", type=int, default=1, help="active-data lower bound (rows per entity)")
    parser.add_argument("--upper-bound", type=int, help="active-data upper bound (down-sample above it)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=["logistic", "linear", "poisson"])
    parser.add_argument("--response", help="label column (default: label or response)")
    parser.add_argument("--bad-records", choices=["fail", "drop"], default="fail")
    add_spark_arguments(parser)
    return parser


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    return partition_random_effect(spark, args.input, args.entity_field, args.index, args.output, args.offsets,
                                   args.lower_bound, args.upper_bound, args.partitions, args.seed,
                                   ColumnNames(response=args.response), args.task, args.bad_records,
                                   args.offsets_exclude)


if __name__ == "__main__":
    raise SystemExit(run_main(build_parser(), run))
