"""Statistics of a training window for the data gate, computed in Spark: rows, mean label, rows
without an entity id, rows with a feature outside a reference list, and per feature its presence and
a histogram of its values.

A feature's bins are cut at quantiles of its values where present (``percentile_approx``); rows
without the feature are a bin of their own (a sparse feature's absence is its value 0). The
window's own most frequent features get cuts of their own, kept for the windows after it; the
reference's features are binned again at the reference's cuts, so that the two histograms a gate
compares share their bins. Everything is aggregated on the executors: the driver receives at most
(own + reference features) x bins counts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from glmix.io.storage import qualified
from glmix.spark.input import InputSpec, dropped_by_reason, load_examples

KEY_SEPARATOR = "\t"   # a feature's key: name TAB term, as the registry's feature lists write it


@dataclass(frozen=True)
class Reference:
    """What the window is compared with: each reference feature's cuts, and where the production
    model's feature lists are (``name<TAB>term`` lines; None when unknown)."""

    cuts: dict[str, list[float]]
    features: str | None = None


def _cuts(exploded: DataFrame, keys: list[str], bins: int) -> dict[str, list[float]]:
    """Each feature's distinct quantile cut points (fewer than ``bins - 1`` when values repeat)."""
    if not keys:
        return {}
    wanted = exploded.sparkSession.createDataFrame([(k,) for k in keys], "key string")
    quantiles = [k / bins for k in range(1, bins)]
    rows = exploded.join(F.broadcast(wanted), "key").groupBy("key").agg(
        F.percentile_approx("value", quantiles, 10_000).alias("cuts")).collect()
    return {r["key"]: sorted(set(r["cuts"])) for r in rows}


def _histograms(exploded: DataFrame, cuts: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, list[int]]]:
    """Counts of values per bin ``(-inf, c0], (c0, c1], ..., (c_last, inf)`` for each set of cuts
    (``{tag: {key: cuts}}``), in one pass."""
    rows = [(tag, key, [float(c) for c in edges]) for tag, by_key in cuts.items() for key, edges in by_key.items()]
    if not rows:
        return {tag: {} for tag in cuts}
    table = exploded.sparkSession.createDataFrame(rows, "tag string, key string, cuts array<double>")
    binned = exploded.join(F.broadcast(table), "key") \
        .select("tag", "key", F.expr("size(filter(cuts, c -> c < value))").alias("bin")) \
        .groupBy("tag", "key", "bin").count().collect()
    out: dict[str, dict[str, list[int]]] = {tag: {key: [0] * (len(edges) + 1) for key, edges in by_key.items()}
                                            for tag, by_key in cuts.items()}
    for r in binned:
        out[r["tag"]][r["key"]][r["bin"]] = int(r["count"])
    return out


def window_statistics(spark: SparkSession, spec: InputSpec, top: int, bins: int,
                      reference: Reference = Reference({})) -> dict[str, Any]:
    """The window's statistics (JSON-ready). Bad rows are counted by reason, not raised: a row
    whose only problem is a missing entity id still counts (it trains the fixed effect)."""
    loaded = load_examples(spark, replace(spec, policy="drop"))
    ids = list(spec.entity_fields)
    usable = loaded.frame.filter(F.col("_bad").isNull() | (F.col("_bad") == "missing_entity_id")) \
        .select("label", "features", *ids).withColumn("_row", F.monotonically_increasing_id()).cache()
    totals = usable.agg(F.count(F.lit(1)).alias("rows"), F.avg("label").alias("label_rate"),
                        *[F.sum(F.when(F.col(i).isNull() | (F.col(i) == ""), 1).otherwise(0)).alias(i)
                          for i in ids]).first()
    assert totals is not None, "an aggregate has one row"
    exploded = usable.select("_row", F.explode("features").alias("f")).select(
        "_row", F.concat_ws(KEY_SEPARATOR, "f.name", F.coalesce("f.term", F.lit(""))).alias("key"),
        F.col("f.value").alias("value")).cache()
    presence = exploded.groupBy("key").count().cache()
    frequent = presence.orderBy(F.desc("count"), "key").limit(top).collect()
    own = _cuts(exploded, [r["key"] for r in frequent], bins)
    counts = _histograms(exploded, {"own": own, "reference": reference.cuts})
    present = {r["key"]: int(r["count"]) for r in frequent}
    if reference.cuts:
        wanted = spark.createDataFrame([(k,) for k in reference.cuts], "key string")
        present |= {r["key"]: int(r["count"]) for r in presence.join(F.broadcast(wanted), "key").collect()}
    unseen = None
    if reference.features:
        known = spark.read.option("sep", "\t").csv(qualified(reference.features)).select(
            F.concat_ws(KEY_SEPARATOR, F.col("_c0"), F.coalesce(F.col("_c1"), F.lit(""))).alias("key"))
        unseen = exploded.join(known, "key", "left_anti").select("_row").distinct().count()
    stats = {
        "rows_read": loaded.counts()["rows_in"], "rows": int(totals["rows"]),
        "label_rate": None if totals["label_rate"] is None else float(totals["label_rate"]),
        "dropped": {k: v for k, v in dropped_by_reason(loaded.counts()).items() if k != "missing_entity_id"},
        "missing_ids": {i: int(totals[i] or 0) for i in ids}, "distinct_features": presence.count(),
        "rows_with_unseen_features": unseen,
        "features": {k: {"present": present.get(k, 0), "cuts": own[k], "counts": counts["own"][k]} for k in own},
        "at_reference_cuts": {k: {"present": present.get(k, 0), "counts": c} for k, c in counts["reference"].items()},
    }
    for frame in (presence, exploded, usable):
        frame.unpersist()
    return stats
