"""Random-effect training: one GLM per entity, many entities per batch, on the Spark executors.

    spark-submit jobs/train_random_effect.py --data RE_PARTITIONS --index IDX --output OUT \
        --task logistic --l2 1.0 [--intercept-l2 0.5] [--l1 0] [--variance none|simple|full] \
        [--warm-start PREVIOUS] [--offsets SCORES [SCORES ...]]

Reads the active entities written by jobs/partition_random_effect (one row per entity, already
projected onto its own features) and solves them with glmix.batched inside ``mapInArrow``: each
Arrow batch of entities is solved together, so a Spark task's memory is bounded by its batch, not
by the number of entities.

``--offsets SCORES...`` (each the ``uid, score`` of another coordinate's training rows, e.g. its
trainer's OUT/scores/train, or ScoringResult Avro with ``--offsets-exclude`` naming this coordinate,
left out of its sum) adds the other coordinates' scores to every row's offset, joined by uid.
Coordinate descent therefore partitions each random effect once and joins only the current offsets
at every update, as Photon ML does. A row without a score is an error naming one of its uids.

Output (published atomically): OUT/model/*.avro (Model schema, modelId = entity id, coefficients
by feature name and term, those with |value| below --sparsity-threshold dropped),
OUT/scores/train/*.parquet (uid, score = x.b for every training row, passive ones included: the
next coordinates' offsets), OUT/_report.json (entities trained, not converged, iteration histogram,
time).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from glmix.batched import EntityProblem, SolverSettings, solve_entities, variances
from glmix.config import Settings, Task
from glmix.errors import DataError
from glmix.feature_index import SHARD_META, FeatureIndex
from glmix.job import JobReport, add_spark_arguments, job_parser, run_main
from glmix.model_io import LOSS_FUNCTION, MODEL_CLASS
from glmix.schemas import raw_schema
from glmix.spark_input import read_summed_scores
from glmix.storage import join, publish_atomically, qualified, storage_for


class RandomEffectConfig(Settings):
    task: Task
    l2: float = Field(1.0, ge=0)
    l1: float = Field(0.0, ge=0)
    regularize_intercept: bool = Field(True, description="small entities need it: a separable entity "
                                                         "would otherwise push its intercept to infinity")
    intercept_l2: float | None = Field(None, ge=0, description="the intercept's L2 weight (default: l2): entity "
                                                               "biases are often wider than their slopes")
    max_iterations: int = Field(50, ge=1)
    gtol: float = Field(1e-10, ge=0)
    variance: Literal["none", "simple", "full"] = "none"
    sparsity_threshold: float = Field(0.0, ge=0)
    warm_start: str | None = None
    prior: str | None = None
    incremental_weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _intercept_weight_is_used(self) -> RandomEffectConfig:
        if self.intercept_l2 is not None and not self.regularize_intercept:
            raise ValueError("intercept_l2 is set but regularize_intercept is off")
        return self

    @property
    def intercept_weight(self) -> float:
        """The intercept's L2 weight: 0 when it is not regularized, else intercept_l2 or l2."""
        if not self.regularize_intercept:
            return 0.0
        return self.l2 if self.intercept_l2 is None else self.intercept_l2


NTV = pa.struct([("name", pa.string()), ("term", pa.string()), ("value", pa.float64())])
RESULT_SCHEMA = pa.schema([
    ("entity_id", pa.string()), ("means", pa.list_(NTV)), ("variances", pa.list_(NTV)),
    ("iterations", pa.int32()), ("converged", pa.bool_()), ("objective", pa.float64()),
    ("uids", pa.list_(pa.string())), ("scores", pa.list_(pa.float64())), ("features", pa.list_(pa.int64())),
    ("coefficients", pa.list_(pa.float64())), ("peak_rss_mb", pa.float64())])
RESULT_DDL = ("entity_id string, means array<struct<name:string,term:string,value:double>>, "
              "variances array<struct<name:string,term:string,value:double>>, iterations int, converged boolean, "
              "objective double, uids array<string>, scores array<double>, features array<bigint>, "
              "coefficients array<double>, peak_rss_mb double")


def _problem(row: dict, config: RandomEffectConfig, intercept: bool,
             lookup: dict[tuple[str, str], int]) -> EntityProblem:
    features = np.asarray(row["features"], dtype=np.int64)
    d, n = len(features), row["n_rows"]
    x = np.zeros((n, d))
    row_of = np.repeat(np.arange(n), row["row_nnz"])
    x[row_of, np.searchsorted(features, np.asarray(row["indices"], dtype=np.int64))] = row["vals"]
    l2 = np.full(d, config.l2)
    if intercept:
        l2[features == 0] = config.intercept_weight
    x0 = np.zeros(d)
    position = {int(g): j for j, g in enumerate(features)}
    for entry in row.get("warm_means") or ():
        j = position.get(lookup.get((entry["name"], entry["term"]), -1))
        if j is not None:
            x0[j] = entry["value"]
    prior_mean = prior_precision = None
    if row.get("prior_means") is not None:
        prior_mean, prior_precision = np.zeros(d), np.zeros(d)
        variance_of = {(v["name"], v["term"]): v["value"] for v in row.get("prior_variances") or ()}
        for entry in row["prior_means"]:
            key = (entry["name"], entry["term"])
            j = position.get(lookup.get(key, -1))
            if j is not None and key in variance_of:
                prior_mean[j] = entry["value"]
                prior_precision[j] = config.incremental_weight / max(variance_of[key], 1e-12)
    offsets = np.asarray(row["offsets"], dtype=np.float64)
    if row.get("score_offsets") is not None:
        offsets = offsets + np.asarray(row["score_offsets"], dtype=np.float64)
    return EntityProblem(row["entity_id"], x, np.asarray(row["labels"]), np.asarray(row["weights"]),
                         offsets, l2, np.full(d, config.l1), x0, prior_mean, prior_precision)


def solve_batches(batches: Iterator[pa.RecordBatch], config: RandomEffectConfig, intercept: bool,
                  names: np.ndarray, terms: np.ndarray) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: solve each batch of entities together."""
    lookup = {(n, t): i for i, (n, t) in enumerate(zip(names.tolist(), terms.tolist(), strict=True))}
    settings = SolverSettings(task=config.task, max_iterations=config.max_iterations, gtol=config.gtol)
    for batch in batches:
        rows = batch.to_pylist()
        problems = [_problem(r, config, intercept, lookup) for r in rows]
        solutions = solve_entities(problems, settings, want_hessian=config.variance != "none")
        out: dict[str, list] = {name: [] for name in RESULT_SCHEMA.names}
        for row, problem, solution in zip(rows, problems, solutions, strict=True):
            features = np.asarray(row["features"], dtype=np.int64)
            keep = np.abs(solution.coefficients) >= config.sparsity_threshold if config.sparsity_threshold \
                else np.ones(len(features), dtype=bool)
            out["entity_id"].append(row["entity_id"])
            out["means"].append([{"name": names[g], "term": terms[g], "value": float(v)}
                                 for g, v, k in zip(features, solution.coefficients, keep, strict=True) if k])
            if config.variance != "none":
                var = variances(solution.hessian, config.variance)
                out["variances"].append([{"name": names[g], "term": terms[g], "value": float(v)}
                                         for g, v, k in zip(features, var, keep, strict=True) if k])
            else:
                out["variances"].append(None)
            out["iterations"].append(solution.iterations)
            out["converged"].append(solution.converged)
            out["objective"].append(solution.objective)
            out["uids"].append(row["uids"])
            out["scores"].append((problem.x @ solution.coefficients).tolist())
            out["features"].append(features.tolist())
            out["coefficients"].append(solution.coefficients.tolist())
            out["peak_rss_mb"].append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        yield pa.RecordBatch.from_pydict(out, schema=RESULT_SCHEMA)


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
    model_dir = join(uri, "model")
    return spark.read.format("avro").load(model_dir).select(
        F.col("modelId").alias("entity_id"), F.col("means").alias(f"{prefix}_means"),
        F.col("variances").alias(f"{prefix}_variances"))


def with_score_offsets(spark: SparkSession, entities: DataFrame, offsets: list[str],
                       exclude: str | None) -> tuple[DataFrame, Callable[[], None]]:
    """Adds ``score_offsets``: the other coordinates' score of each of an entity's rows (summed over
    the ``offsets`` sources), in its row order; and a check to call once the result was computed,
    which raises if a row had no score in some source.

    Only (entity, position, uid) go through the join and regrouping; the entity blocks meet the
    result in one join by entity id."""
    rows = entities.select("entity_id", F.posexplode("uids").alias("position", "uid"))
    scored = rows.join(read_summed_scores(spark, offsets, exclude), "uid", "left")
    unscored = Observation(f"unscored-{id(scored)}")
    counted = scored.observe(unscored, F.count_if(F.col("_score").isNull()).alias("rows"))
    per_entity = counted.groupBy("entity_id").agg(F.sort_array(F.collect_list(
        F.struct("position", F.coalesce("_score", F.lit(0.0)).alias("score")))).alias("_scored"))

    def check() -> None:
        missing = int(unscored.get.get("rows") or 0)
        if missing:
            example = scored.filter(F.col("_score").isNull()).select("uid").first()
            raise DataError(f"{missing} training row(s) have no score in the offsets (e.g. uid "
                            f"{example['uid'] if example else '?'})", path=", ".join(offsets), field="uid")

    return entities.join(per_entity.select("entity_id", F.col("_scored.score").alias("score_offsets")),
                         "entity_id"), check


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
    if config.warm_start:
        entities = entities.join(_previous(spark, qualified(config.warm_start), "warm"), "entity_id", "left")
    if config.prior:
        entities = entities.join(_previous(spark, qualified(config.prior), "prior"), "entity_id", "left")
    names, terms, intercept = index.names, index.terms, index.shard.intercept
    started = time.monotonic()
    results = entities.mapInArrow(lambda batches: solve_batches(batches, config, intercept, names, terms),
                                  RESULT_DDL).cache()
    summary = results.agg(F.count(F.lit(1)).alias("entities"),
                          F.sum((~F.col("converged")).cast("int")).alias("not_converged"),
                          F.sum(F.size("uids")).alias("rows"), F.max("peak_rss_mb").alias("peak")).first()
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
        report.write_into(tmp)
    results.unpersist()
    return report.to_dict()


def build_parser() -> argparse.ArgumentParser:
    parser = job_parser("train_random_effect", __doc__)
    parser.add_argument("--data", required=True, help="output of jobs/partition_random_effect")
    parser.add_argument("--index", required=True, help="the random-effect shard's index")
    parser.add_argument("--output", required=True)
    parser.add_argument("--model-id", default="random-effect")
    parser.add_argument("--offsets", nargs="+", metavar="SCORES",
                        help="scores of the other coordinates, summed: uid/score sets, or ScoringResult Avro")
    parser.add_argument("--offsets-exclude", metavar="COORDINATE", help="this coordinate's name in the offsets")
    for name, field in RandomEffectConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, default=None)
    add_spark_arguments(parser)
    return parser


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if k in RandomEffectConfig.model_fields and v is not None}
    config = RandomEffectConfig.parse(values, where="random_effect")
    return train_random_effect(spark, args.data, args.index, args.output, config, args.model_id, args.offsets,
                               args.offsets_exclude)


if __name__ == "__main__":
    raise SystemExit(run_main(build_parser(), run))
