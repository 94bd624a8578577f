"""Random-effect training: one GLM per entity, many entities per batch, on the Spark executors.

    spark-submit jobs/train_random_effect.py --data RE_PARTITIONS --index IDX --output OUT \
        --task logistic --l2 1.0|auto [--intercept-l2 0.5|auto] [--l1 0] [--variance none|simple|full] \
        [--warm-start PREVIOUS] [--offsets SCORES [SCORES ...]]

Reads the active entities written by jobs/partition_random_effect (one row per entity, already
projected onto its own features) and solves them with glmix.train.random_effect inside ``mapInArrow``: each
Arrow batch of entities is solved together, so a Spark task's memory is bounded by its batch, not
by the number of entities.

``--offsets SCORES...`` (each the ``uid, score`` of another coordinate's training rows, e.g. its
trainer's OUT/scores/train, or ScoringResult Avro with ``--offsets-exclude`` naming this coordinate,
left out of its sum) adds the other coordinates' scores to every row's offset, joined by uid.
Coordinate descent therefore partitions each random effect once and joins only the current offsets
at every update, as Photon ML does. A row without a score is an error naming one of its uids.

A normalized shard (``normalization:``, glmix.glm.normalization) is solved in its normalized space,
each entity under its own projection of the shard's change of variables; the model is published
in the original space.

``--l2 auto`` (or ``--intercept-l2 auto``) learns the prior variances from the data first
(glmix.train.prior_variance): passes over the entities, each solving them all and summing their
posteriors, until the variances settle; the model is then trained under the learned weights. The
passes start from the variances the warm start (the previous coordinate-descent pass) learned.

Output (published atomically): OUT/model/*.avro (Model schema, modelId = entity id, coefficients
by feature name and term, those with |value| below --sparsity-threshold dropped),
OUT/scores/train/*.parquet (uid, score = x.b for every training row, passive ones included: the
next coordinates' offsets), OUT/_report.json (entities trained, not converged, iteration histogram,
time; with auto, ``learned_prior``: the variances, their L2 weights and every pass's values).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from glmix.data.feature_index import FeatureIndex
from glmix.errors import DataError, GlmixError
from glmix.glm.normalization import Normalization, shard_normalization
from glmix.io.schemas import raw_schema
from glmix.io.scores import duplicate_uid_message
from glmix.io.storage import join, publish_atomically, qualified, storage_for
from glmix.model.linear_model import LOSS_FUNCTION, MODEL_CLASS
from glmix.settings import SHARD_META
from glmix.spark.input import read_summed_scores
from glmix.spark.job import REPORT_NAME, JobReport, run_main
from glmix.spark.job_args import TrainRandomEffectArgs
from glmix.train.prior_variance import LearnedPrior, Posteriors, PriorKind, learn_prior_variances
from glmix.train.random_effect import POSTERIORS_DDL, RESULT_DDL, RandomEffectConfig, prior_posteriors, solve_batches


def training_scores(spark: SparkSession, data: str, results: DataFrame) -> DataFrame:
    """``uid, score`` of every training row: the active rows' from their solve; the passive rows'
    from their entity's model (rows removed by down-sampling), or 0 (entities without a model)."""
    active = results.select(F.explode(F.arrays_zip("uids", "scores")).alias("s")).select(
        F.col("s.uids").alias("uid"), F.col("s.scores").alias("score"))
    models = results.select("entity_id", F.map_from_arrays("features", "coefficients").alias("_b"))
    passive = spark.read.parquet(join(data, "passive")).join(models, "entity_id", "left")
    dot = F.aggregate(F.arrays_zip("indices", "values"), F.lit(0.0), lambda acc, f: acc + f["values"] * F.coalesce(
        F.element_at("_b", f["indices"]), F.lit(0.0)))
    return active.unionByName(passive.select("uid", dot.alias("score")))


def _previous(spark: SparkSession, uri: str, prefix: str) -> DataFrame:
    """A previous model's entities: a trainer's output (its model/) or a Model Avro directory (a
    GAME model's coefficients/, as the production version's)."""
    model_dir = join(uri, "model") if storage_for(uri).exists(join(uri, "model")) else uri
    return spark.read.format("avro").load(model_dir).select(
        F.col("modelId").alias("entity_id"), F.col("means").alias(f"{prefix}_means"),
        F.col("variances").alias(f"{prefix}_variances"))


def with_score_offsets(spark: SparkSession, entities: DataFrame, offsets: list[str],
                       exclude: str | None) -> tuple[DataFrame, Callable[[], None]]:
    """Adds ``score_offsets``: the other coordinates' score of each of an entity's rows (summed over
    the ``offsets`` sources), in its row order; and a check to call once the result was computed,
    which raises if a row's uid is repeated in a source or a row had no score in some source.

    Only (entity, position, uid) go through the join and regrouping; the entity blocks meet the
    result in one join by entity id."""
    rows = entities.select("entity_id", F.posexplode("uids").alias("position", "uid"))
    scored = rows.join(read_summed_scores(spark, offsets, exclude), "uid", "left")
    unscored = Observation(f"unscored-{id(scored)}")
    counted = scored.observe(unscored, F.count_if(F.col("_score").isNull()).alias("rows"),
                             F.count_if(F.col("_repeats") > 0).alias("repeated"))
    per_entity = counted.groupBy("entity_id").agg(F.sort_array(F.collect_list(
        F.struct("position", F.coalesce("_score", F.lit(0.0)).alias("score")))).alias("_scored"))

    def check() -> None:
        if unscored.get.get("repeated"):
            repeated = scored.filter(F.col("_repeats") > 0).select("uid", "_repeats").first()
            assert repeated is not None  # counted above
            raise DataError(duplicate_uid_message(repeated["uid"], repeated["_repeats"] + 1), path=", ".join(offsets),
                            field="uid")
        missing = int(unscored.get.get("rows") or 0)
        if missing:
            example = scored.filter(F.col("_score").isNull()).select("uid").first()
            raise DataError(f"{missing} training row(s) have no score in the offsets (e.g. uid "
                            f"{example['uid'] if example else '?'})", path=", ".join(offsets), field="uid")

    return entities.join(per_entity.select("entity_id", F.col("_scored.score").alias("score_offsets")),
                         "entity_id"), check


def _starting_variances(config: RandomEffectConfig, warm_start: str | None) -> dict[PriorKind, float]:
    """Where learning the prior starts: the warm start's learned variances (the previous pass's), else 1."""
    start: dict[PriorKind, float] = dict.fromkeys(config.learned, 1.0)
    report = join(warm_start, REPORT_NAME) if warm_start else None
    if report and storage_for(report).exists(report):
        learned = json.loads(storage_for(report).read_bytes(report)).get("learned_prior") or {}
        start.update({k: v for k, v in learned.get("variances", {}).items() if k in start})
    return start


def learn_prior(entities: DataFrame, config: RandomEffectConfig, intercept: bool, names: Any, terms: Any,
                normalization: Normalization | None, warm_start: str | None) -> LearnedPrior:
    """``l2: auto``: the prior variances, each pass one Spark job over the (cached) entities."""
    def posteriors_at(variances: dict[PriorKind, float]) -> Posteriors:
        fixed = config.with_prior_variances(variances)
        sums = entities.mapInArrow(lambda batches: prior_posteriors(batches, fixed, intercept, names, terms,
                                                                             normalization),
                                   POSTERIORS_DDL).agg(*[F.sum(c).alias(c) for c in Posteriors.columns()]).first()
        assert sums is not None  # an aggregate has one row
        return Posteriors.from_row(sums.asDict())

    def progress(step: int, variances: dict[PriorKind, float]) -> None:
        shown = ", ".join(f"{kind} {value:.4g}" for kind, value in variances.items())
        print(f"learning the prior: pass {step + 1}: variances {shown}", flush=True)

    return learn_prior_variances(_starting_variances(config, warm_start), posteriors_at, config.task == "linear",
                                 config.prior_iterations, config.prior_tolerance, progress)


def train_random_effect(spark: SparkSession, data: str, index_dir: str, output: str,
                        config: RandomEffectConfig, model_id: str = "random-effect",
                        offsets: list[str] | None = None, offsets_exclude: str | None = None) -> dict[str, Any]:
    data, index_dir, output = qualified(data), qualified(index_dir), qualified(output)
    offsets = [qualified(uri) for uri in offsets or []]
    report = JobReport("train_random_effect", {"data": data, "index": index_dir, "output": output,
                                               "offsets": offsets, "offsets_exclude": offsets_exclude,
                                               "config": config.model_dump()})
    index = FeatureIndex.load(index_dir)
    entities = spark.read.parquet(join(data, "active")).drop("partition")
    check_offsets: Callable[[], None] | None = None
    if offsets:
        entities, check_offsets = with_score_offsets(spark, entities, offsets, offsets_exclude)
    warm_start, prior = config.previous(model_id)
    if warm_start:
        entities = entities.join(_previous(spark, qualified(warm_start), "warm"), "entity_id", "left")
    if prior:
        entities = entities.join(_previous(spark, qualified(prior), "prior"), "entity_id", "left")
    names, terms, intercept = index.names, index.terms, index.shard.intercept
    shard_change = shard_normalization(index_dir, index)
    normalization = None if shard_change.is_identity else shard_change
    if normalization is not None and prior:
        raise GlmixError(f"feature shard {index.shard.name} is normalized: a random effect on it cannot be trained "
                         "incrementally (its prior is in the original space); drop the prior or the normalization")
    learned = None
    if config.learned:
        # one task per core at each pass (a join's shuffle partitions would each pay a Python worker's start)
        entities = entities.coalesce(spark.sparkContext.defaultParallelism).cache()
        started = time.monotonic()
        learned = learn_prior(entities, config, intercept, names, terms, normalization, warm_start)
        report.counters["prior_seconds"] = round(time.monotonic() - started, 3)
        config = config.with_prior_variances(learned.variances)
    started = time.monotonic()
    results = entities.mapInArrow(lambda batches: solve_batches(batches, config, intercept, names, terms,
                                                                normalization),
                                  RESULT_DDL).cache()
    summary = results.agg(F.count(F.lit(1)).alias("entities"),
                          F.sum((~F.col("converged")).cast("int")).alias("not_converged"),
                          F.sum(F.size("uids")).alias("rows"), F.max("peak_rss_mb").alias("peak")).first()
    assert summary is not None  # an aggregate has one row
    solve_seconds = time.monotonic() - started
    if check_offsets is not None:
        try:
            check_offsets()
        except DataError:
            results.unpersist()
            raise
    histogram = {int(r["iterations"]): int(r["count"]) for r in
                 results.groupBy("iterations").count().orderBy("iterations").collect()}
    with publish_atomically(output) as tmp:
        models = results.select(F.col("entity_id").alias("modelId"), F.lit(MODEL_CLASS[config.task]).alias(
            "modelClass"), "means", "variances", F.lit(LOSS_FUNCTION[config.task]).alias("lossFunction"))
        models.write.format("avro").option("avroSchema", json.dumps(raw_schema("Model"))).save(join(tmp, "model"))
        training_scores(spark, data, results).write.parquet(join(tmp, "scores", "train"))
        entities_count = int(summary["entities"] or 0)
        report.counters.update({
            "model_id": model_id, "entities_trained": entities_count,
            "entities_not_converged": int(summary["not_converged"] or 0), "rows": int(summary["rows"] or 0),
            "iteration_histogram": histogram, "solve_seconds": round(solve_seconds, 3),
            "entities_per_second": entities_count / max(solve_seconds, 1e-9),
            "peak_worker_rss_mb": float(summary["peak"] or 0.0)})
        storage_for(tmp).write_bytes(join(tmp, SHARD_META), storage_for(data).read_bytes(join(data, SHARD_META)))
        if learned is not None:
            report.counters["learned_prior"] = learned.to_dict()
        report.write_into(tmp)
    results.unpersist()
    entities.unpersist()
    return report.to_dict()


ARGS = TrainRandomEffectArgs  # this job's command line (glmix.spark.job_args)


def run(spark: SparkSession, args: TrainRandomEffectArgs) -> dict[str, Any]:
    return train_random_effect(spark, args.data, args.index, args.output, args.config(), args.model_id, args.offsets,
                               args.offsets_exclude)


if __name__ == "__main__":
    raise SystemExit(run_main(ARGS, run, __doc__))
