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
  ML does; the rows left out are passive data too (the trainer scores them with the entity's model).
  A heavy entity's rows are thinned *before* they are grouped (see :func:`_thinned`), so no task
  ever holds more than about the bound of one entity's rows: an entity with 1% of ten billion rows
  would otherwise be one task's hundred million rows;
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

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from glmix.data.feature_index import FeatureIndex, write_shard_meta
from glmix.errors import DataError
from glmix.io.dated import DatedDays
from glmix.io.examples import ColumnNames
from glmix.io.storage import join, publish_atomically, qualified, storage_for
from glmix.settings import BadRecordPolicy, Task
from glmix.spark.indexing import index_rows, indexing_counts
from glmix.spark.input import InputSpec, LoadedInput, dropped_by_reason, load_examples, read_scores
from glmix.spark.job import JobReport, run_main
from glmix.spark.job_args import PartitionArgs

ROW_COLUMNS = ["uid", "entity_id", "label", "weight", "offset"]
ROW_FIELDS = ["uid", "label", "weight", "offset", "indices", "values"]  # of a row inside its entity


def snake_partition(rank: Column, partitions: int) -> Column:
    """Deal ranked items 0..P-1 then P-1..0, ...: greedy-like balance without a global view."""
    block, position = F.floor(rank / partitions), rank % partitions
    return F.when(block % 2 == 0, position).otherwise(partitions - 1 - position).cast("int")


def partition_random_effect(spark: SparkSession, data: str, entity_field: str, index_dir: str, output: str,
                            offsets: str | None = None, lower_bound: int = 1, upper_bound: int | None = None,
                            partitions: int = 4, seed: int = 0, columns: ColumnNames = ColumnNames(),
                            task: Task | None = None, policy: BadRecordPolicy = "fail",
                            offsets_exclude: str | None = None, dates: DatedDays | None = None) -> dict[str, Any]:
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
                                            task=task, policy=policy, merge_repeats=False, dates=dates))
    rows = loaded.good_rows().withColumnRenamed(entity_field, "entity_id")
    offset_check = None
    if offsets is not None:
        rows, offset_check = _with_offsets(spark, rows, offsets, offsets_exclude, policy)
    heavy = _heavy_entities(_rows_to_count(loaded, rows, entity_field, policy), upper_bound) \
        if upper_bound is not None else None
    indexed, indexing = index_rows(spark, rows, index_meta, ROW_COLUMNS)
    to_group = _thinned(indexed, heavy, upper_bound, seed) if heavy is not None and upper_bound is not None else indexed
    grouped = _group_by_entity(to_group, heavy)
    bounded = _bounded(grouped, lower_bound, upper_bound, seed)

    with publish_atomically(output) as tmp:
        assignment = _assignment(bounded, partitions)
        (_entity_blocks(bounded.active).join(assignment.drop("n_rows"), "entity_id").repartition("partition")
         .sortWithinPartitions("entity_id").write.partitionBy("partition").parquet(join(tmp, "active")))
        counts = loaded.check()
        n_missing = offset_check() if offset_check else 0
        totals = _totals(bounded.entities, bounded.n_rows, lower_bound)
        if not totals["entities_active"]:
            raise DataError(f"no {entity_field} has {lower_bound} or more rows (the lower bound): no entity to "
                            f"train ({totals['entities_passive']} below it)", path=data, field=entity_field)
        passive = bounded.passive_rows()
        (passive if totals["entities_passive"] or totals["entities_down_sampled"] else passive.limit(0)) \
            .write.parquet(join(tmp, "passive"))
        partition_list = _write_partition_list(tmp, assignment)
        write_shard_meta(tmp, shard, index_meta.size)
        dropped = dropped_by_reason(counts)
        if n_missing:
            dropped["missing_offset"] = n_missing
        row_sizes = [p["rows"] for p in partition_list]
        report.counters.update({
            "rows_in": counts["rows_in"], "dropped": dropped, **indexing_counts(indexing), **totals,
            "partitions": len(partition_list),
            "partition_rows": {"min": min(row_sizes, default=0), "max": max(row_sizes, default=0),
                               "mean": sum(row_sizes) / max(1, len(row_sizes))}})
        report.write_into(tmp)
        grouped.unpersist()
        if heavy is not None:
            heavy.unpersist()
    return report.to_dict()


def _with_offsets(spark: SparkSession, rows: DataFrame, offsets: str, exclude: str | None,
                  policy: BadRecordPolicy) -> tuple[DataFrame, Callable[[], int]]:
    """The other coordinates' scores joined by uid and added to each row's offset; and a check to
    call once the rows were computed: it returns how many rows had no score (dropped under
    ``drop``), or raises naming one under ``fail``."""
    scored = rows.join(read_scores(spark, offsets, exclude), on="uid", how="left")
    missing = Observation(f"offsets-{id(scored)}")
    rows = scored.observe(missing, F.sum(F.when(F.col("_score").isNull(), 1).otherwise(0)).alias("n"))
    if policy == "drop":
        rows = rows.filter(F.col("_score").isNotNull())

    def check() -> int:
        n_missing = int(missing.get.get("n") or 0)
        if n_missing and policy == "fail":
            example = scored.filter(F.col("_score").isNull()).select("uid").first()
            raise DataError(f"{n_missing} row(s) have no score in the offsets (e.g. uid "
                            f"{example['uid'] if example else '?'}); policy 'fail'", path=offsets, field="uid")
        return n_missing

    return rows.withColumn("offset", F.col("offset") + F.coalesce("_score", F.lit(0.0))).drop("_score"), check


def _hash(uid: Column, seed: int) -> Column:
    """The down-sampling rank of a row: its entity keeps the rows of smallest hash."""
    return F.xxhash64(uid, F.lit(seed))


def _rows_to_count(loaded: LoadedInput, rows: DataFrame, entity_field: str, policy: BadRecordPolicy) -> DataFrame:
    """The rows whose entities are counted for the bound: under ``fail`` every row read, unchecked, so
    that the pass decodes the entity ids alone (a bad row, or one without an offset, fails the job
    afterwards: the counts are exact whenever it publishes); under ``drop`` the rows kept, which
    decodes and checks every field (at 1M rows 1.8 s against 2.5 s for the pass)."""
    if policy == "fail":
        return loaded.located.select(F.col(entity_field).alias("entity_id"))
    return rows


def _heavy_entities(rows: DataFrame, upper_bound: int) -> DataFrame:
    """``entity_id, n_rows_before`` of the entities over the bound (cached). Counting rows per entity
    is an aggregation Spark combines on the map side, so it is balanced whatever the skew; it reads
    the input once more (the indexing it does not need)."""
    counts = rows.groupBy("entity_id").agg(F.count(F.lit(1)).alias("n_rows_before"))
    return counts.filter(F.col("n_rows_before") > upper_bound).cache()


def _thinned(indexed: DataFrame, heavy: DataFrame, upper_bound: int, seed: int) -> DataFrame:
    """The rows with ``_chunk``: -1 for a row that reaches its entity's group, else the chunk of the
    rows its entity leaves out. Entities over the bound keep, of the rows of smallest hash, about
    ``bound + 8 sqrt(bound) + 16`` before grouping: each row stays when its hash is below the fraction
    ``q = that / n`` of the hash range. Hashes are uniform, so all of the ``bound`` smallest stay, and
    the exact cut is made after grouping; fewer than ``bound`` rows stay only when a Binomial(n, q)
    falls 8 standard deviations below its mean (probability below 1e-15). The rows left out are
    grouped in the same shuffle, in about n / bound chunks of about the bound each (by another hash
    of the uid), rather than read and indexed a second time for the passive output (at 10M rows
    that second pass took 38 s a coordinate). The heavy entities are few (those over the bound) and
    meet the rows as a broadcast."""
    n_heavy = F.col("_n_heavy")
    fraction = F.least(F.lit(1.0), F.lit(upper_bound + 8 * upper_bound ** 0.5 + 16) / n_heavy)
    threshold = F.lit(-(2.0 ** 63)) + fraction * F.lit(2.0 ** 64)   # the hash is a signed 64-bit integer
    stays = n_heavy.isNull() | (_hash(F.col("uid"), seed).cast("double") < threshold)
    chunk = F.pmod(_hash(F.col("uid"), seed + 1), F.ceil(n_heavy / F.lit(upper_bound)))
    return indexed.join(F.broadcast(heavy.withColumnRenamed("n_rows_before", "_n_heavy")), "entity_id", "left") \
        .select(*indexed.columns, F.when(stays, F.lit(-1)).otherwise(chunk).cast("int").alias("_chunk"))


def _group_by_entity(rows: DataFrame, heavy: DataFrame | None) -> DataFrame:
    """One shuffle: every entity's rows together (cached; the active and passive outputs and the
    report all derive from it), with ``n_rows_before`` its rows in the input (a heavy entity's
    count from ``heavy``: its thinned list is shorter), and the chunks of rows the heavy entities
    left out (``_left_out``; see :func:`_thinned`). uid leads the row struct, so sorting an
    entity's rows (a compiled sort_array) orders them by uid."""
    row = F.struct(*ROW_FIELDS, F.size("indices").alias("nnz"))
    if heavy is None:
        grouped = rows.groupBy("entity_id").agg(F.collect_list(row).alias("_rows"))
        return grouped.withColumn("n_rows_before", F.size("_rows")).withColumn("_left_out", F.lit(False)).cache()
    grouped = rows.groupBy("entity_id", "_chunk").agg(F.collect_list(row).alias("_rows"))
    return grouped.join(F.broadcast(heavy), "entity_id", "left") \
        .withColumn("n_rows_before", F.coalesce("n_rows_before", F.size("_rows"))) \
        .withColumn("_left_out", F.col("_chunk") >= 0).drop("_chunk").cache()


@dataclass
class _Bounded:
    """The entities (``entities``: one group each, with ``n_rows_before``), those with a model
    (``active``, rows down-sampled to the upper bound; ``n_rows`` their row count after it) and the
    rows no model trains on (``passive``)."""

    entities: DataFrame
    active: DataFrame
    passive: DataFrame          # entity_id, _rows
    n_rows: Column

    def passive_rows(self) -> DataFrame:
        return (self.passive.select("entity_id", F.explode("_rows").alias("r"))
                .select("r.uid", "entity_id", "r.label", "r.weight", "r.offset", "r.indices", "r.values"))


def _bounded(grouped: DataFrame, lower_bound: int, upper_bound: int | None, seed: int) -> _Bounded:
    """Entities below the lower bound become passive; those above the upper bound keep the rows of
    smallest (hash(uid, seed), uid), their weights scaled to keep the entity's total, and the rows
    left out (here and by :func:`_thinned`) become passive (lambdas, interpreted, but only for the
    entities over the bound)."""
    entities = grouped.filter(~F.col("_left_out"))
    passive = entities.filter(F.col("n_rows_before") < lower_bound).select("entity_id", "_rows")
    active = entities.filter(F.col("n_rows_before") >= lower_bound)
    n_rows = F.col("n_rows_before")
    if upper_bound is None:
        return _Bounded(entities, active, passive, n_rows)
    scale = n_rows / F.lit(upper_bound)
    by_hash = F.sort_array(F.transform("_rows", lambda r: F.struct(_hash(r["uid"], seed).alias("h"), r.alias("r"))))
    kept = F.transform(F.slice(by_hash, 1, upper_bound), lambda s: s["r"].withField("weight", s["r"]["weight"] * scale))
    removed = F.transform(F.slice(by_hash, upper_bound + 1, F.size("_rows") - upper_bound), lambda s: s["r"])
    passive = passive.unionByName(active.filter(n_rows > upper_bound).select("entity_id", removed.alias("_rows"))) \
        .unionByName(grouped.filter("_left_out").select("entity_id", "_rows"))
    active = active.withColumn("_rows", F.when(n_rows > upper_bound, kept).otherwise(F.col("_rows")))
    return _Bounded(entities, active, passive, F.least(n_rows, F.lit(upper_bound)))


def _assignment(bounded: _Bounded, partitions: int) -> DataFrame:
    """Each active entity's partition (``entity_id, n_rows, partition``): one task ranks all
    entities (two small columns per entity), largest first, and deals them in snake order."""
    rank = F.row_number().over(Window.orderBy(F.desc("n_rows"), "entity_id")) - 1
    return bounded.active.select("entity_id", bounded.n_rows.alias("n_rows")).select(
        "entity_id", "n_rows", snake_partition(rank, partitions).alias("partition"))


def _totals(entities: DataFrame, n_rows: Column, lower_bound: int) -> dict[str, int]:
    """The report's entity and row counts, from the cached entity sizes (not by re-reading outputs)."""
    is_passive = F.col("n_rows_before") < lower_bound
    totals = entities.agg(
        F.count_if(~is_passive).alias("active"), F.count_if(is_passive).alias("passive"),
        F.sum(F.when(is_passive, F.col("n_rows_before"))).alias("rows_passive"),
        F.sum(F.when(~is_passive, F.col("n_rows_before"))).alias("rows_before"),
        F.sum(F.when(~is_passive, n_rows)).alias("rows"),
        F.count_if(~is_passive & (n_rows < F.col("n_rows_before"))).alias("sampled")).first()
    assert totals is not None  # an aggregate has one row
    return {"entities_active": int(totals["active"]), "entities_passive": int(totals["passive"]),
            "entities_down_sampled": int(totals["sampled"]), "rows_active": int(totals["rows"] or 0),
            "rows_removed_by_down_sampling": int((totals["rows_before"] or 0) - (totals["rows"] or 0)),
            "rows_passive": int(totals["rows_passive"] or 0)}


def _write_partition_list(directory: str, assignment: DataFrame) -> list[dict[str, Any]]:
    """``_partitions.json``: entities and rows of every partition."""
    per_partition = (assignment.groupBy("partition").agg(F.count(F.lit(1)).alias("entities"),
                                                         F.sum("n_rows").alias("rows"))
                     .orderBy("partition").collect())
    partition_list = [{"partition": r["partition"], "path": f"active/partition={r['partition']}",
                       "entities": r["entities"], "rows": int(r["rows"])} for r in per_partition]
    storage_for(directory).write_bytes(join(directory, "_partitions.json"), json.dumps(partition_list, indent=2).encode())
    return partition_list


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


ARGS = PartitionArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: PartitionArgs) -> dict[str, Any]:
    return partition_random_effect(spark, args.input, args.entity_field, args.index, args.output, args.offsets,
                                   args.lower_bound, args.upper_bound, args.partitions, args.seed,
                                   args.columns, args.task, args.bad_records,
                                   args.offsets_exclude, args.dated())


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
