"""Scoring, the work of jobs/score.py (and of the notebook API's ``GameModel.score``): apply a GAME
model (fixed effect + every random effect) to Avro examples.

Each coordinate's score of a row is x.b over the features of the coordinate's shard (matched by
feature name and term, the intercept included); a random effect uses the model of the row's
entity (joined by entity id), and an entity without a model scores 0 for that coordinate. A
coordinate glmix cannot apply itself (a Keras fixed effect, external scores: ``--scores
NAME=DIR``) contributes its own scores of the dataset, ``DIR/scores/<NAME of --data>/``, joined by
uid; a row without one is an error naming how many and which. ``predictionScore`` is the
row's offset plus the sum of the coordinate scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from glmix.errors import ConfigError, DataError
from glmix.io.dated import DatedDays
from glmix.io.examples import ColumnNames
from glmix.io.schemas import INTERCEPT_NAME, raw_schema
from glmix.io.storage import join, publish_atomically, qualified, storage_for
from glmix.model.game_model import CoordinateModel
from glmix.model.linear_model import read_models
from glmix.settings import BadRecordPolicy
from glmix.spark.indexing import KEY_SEPARATOR, looked_up
from glmix.spark.input import InputSpec, dropped_by_reason, kept_bag_column, load_examples, merged_features, read_scores
from glmix.spark.job import JobReport


def _key(name: Column, term: Column) -> Column:
    return F.concat(name, F.lit(KEY_SEPARATOR), F.coalesce(term, F.lit("")))


def _model_maps(spark: SparkSession, model: CoordinateModel) -> DataFrame:
    """One row per model (entity): ``_id_<name>`` and ``_m_<name>``, a map from feature key to coefficient."""
    frame = spark.read.format("avro").load(qualified(model.coefficients))
    means = F.map_from_entries(F.transform("means", lambda m: F.struct(_key(m["name"], m["term"]), m["value"])))
    return frame.select(F.col("modelId").alias(f"_id_{model.name}"), means.alias(f"_m_{model.name}"))


def with_given_scores(spark: SparkSession, rows: DataFrame, model: CoordinateModel, dataset: str) -> DataFrame:
    """A coordinate glmix cannot apply (Keras, external): its scores of this dataset, joined by uid.
    ``_has_<name>`` is 0 where a row has no score, which the job reports as an error."""
    scores = read_scores(spark, qualified(model.scores(dataset))).withColumnRenamed("uid", f"_uid_{model.name}")
    joined = rows.join(scores, rows["uid"] == scores[f"_uid_{model.name}"], "left").drop(f"_uid_{model.name}")
    return (joined.withColumn(f"_has_{model.name}", F.col("_score").isNotNull().cast("int"))
            .withColumn(f"_s_{model.name}", F.coalesce("_score", F.lit(0.0))).drop("_score"))


def with_fixed_effect_score(spark: SparkSession, rows: DataFrame, model: CoordinateModel) -> DataFrame:
    """Adds ``_s_<name>`` and ``_has_<name>`` (always 1) for the fixed effect.

    Each row's features are looked up in Arrow against the model's keys, shipped once as a
    broadcast: Spark's map lookup scans a map's keys one by one, so a coefficient map would cost
    the model's size for every feature of every row.
    """
    shard = model.shard()
    fixed = list(read_models(qualified(model.coefficients)))
    if len(fixed) != 1:
        raise DataError(f"a fixed-effect model holds one model, found {len(fixed)}", path=model.coefficients)
    means = fixed[0].means
    table = spark.sparkContext.broadcast((
        pa.array([f"{name}{KEY_SEPARATOR}{term or ''}" for name, term in means], pa.string()),
        np.fromiter(means.values(), dtype=np.float64, count=len(means))))
    intercept = means.get((INTERCEPT_NAME, ""), 0.0) if shard.intercept else 0.0

    @F.arrow_udf(DoubleType())  # type: ignore[attr-defined,untyped-decorator]  # re-exported by a star import
    def dot(features: pa.Array) -> pa.Array:
        keys, coefficients = table.value
        row_of, found, values, _ = looked_up(features, keys)
        known = pc.is_valid(found).to_numpy(zero_copy_only=False)
        position = pc.fill_null(found, 0).to_numpy(zero_copy_only=False)[known]
        products = values[known] * coefficients[position]
        return pa.array(np.bincount(row_of[known], weights=products, minlength=len(features)) + intercept)

    features = merged_features(tuple(kept_bag_column(b) for b in shard.bags), rows.schema, merge_repeats=False)
    return rows.withColumn(f"_s_{model.name}", dot(features)).withColumn(f"_has_{model.name}", F.lit(1))


def with_random_effect_score(spark: SparkSession, rows: DataFrame, model: CoordinateModel) -> DataFrame:
    """Adds ``_s_<name>`` (the coordinate's score, 0 without a model) and ``_has_<name>`` to every row.

    Each row meets its entity's coefficient map through one join (an entity's map is small, so
    looking a feature up in it is cheap) and the dot product is a lookup per feature: no explode,
    no regrouping of rows.
    """
    shard = model.shard()
    maps = _model_maps(spark, model)
    coefficients = F.col(f"_m_{model.name}")
    assert model.entity_field is not None, "a random effect has an entity field"
    joined = rows.join(maps, rows[model.entity_field] == maps[f"_id_{model.name}"], "left") \
        .drop(f"_id_{model.name}")
    features = merged_features(tuple(kept_bag_column(b) for b in shard.bags), rows.schema)
    dot = F.aggregate(features, F.lit(0.0), lambda acc, f: acc + f["value"] * F.coalesce(
        F.element_at(coefficients, _key(f["name"], f["term"])), F.lit(0.0)))
    if shard.intercept:
        dot = dot + F.coalesce(F.element_at(coefficients, F.lit(INTERCEPT_NAME + KEY_SEPARATOR)), F.lit(0.0))
    return (joined.withColumn(f"_s_{model.name}", F.when(coefficients.isNull(), F.lit(0.0)).otherwise(dot))
            .withColumn(f"_has_{model.name}", coefficients.isNotNull().cast("int"))
            .drop(f"_m_{model.name}"))


def score_frame(spark: SparkSession, dataset: str, uri: str, models: list[CoordinateModel], model_id: str,
                columns: ColumnNames, policy: BadRecordPolicy,
                id_fields: tuple[str, ...] = (), dates: DatedDays | None = None) -> tuple[DataFrame, Any, list[str]]:
    """The ScoringResult rows of one dataset, plus its loaded input (for counts)."""
    applied = [m for m in models if m.type != "scores"]
    bags = tuple(sorted({b for m in applied for b in m.shard().bags}))
    entity_fields = tuple(sorted({m.entity_field for m in models if m.entity_field} | set(id_fields)))
    loaded = load_examples(spark, InputSpec(uri=uri, bags=bags, columns=columns, entity_fields=entity_fields,
                                            policy=policy, keep_bags=True, dates=dates))
    rows = loaded.good_rows()
    for model in models:
        scorers: dict[str, Callable[[SparkSession, DataFrame, CoordinateModel], DataFrame]] = {
            "scores": partial(with_given_scores, dataset=dataset), "fixed": with_fixed_effect_score,
            "random": with_random_effect_score}
        add_score = scorers[model.type]
        rows = add_score(spark, rows, model)
    names = [m.name for m in models]
    coordinate_map = F.map_from_arrays(F.array(*[F.lit(n) for n in names]),
                                       F.array(*[F.col(f"_s_{n}") for n in names]))
    metadata = (F.create_map(*[x for f in entity_fields for x in (F.lit(f), F.col(f))]) if entity_fields
                else F.lit(None).cast("map<string,string>"))
    result = rows.select(
        F.col("uid"), F.col("label"), F.col("weight"), F.lit(model_id).alias("modelId"),
        (F.col("offset") + sum((F.col(f"_s_{n}") for n in names), F.lit(0.0))).alias("predictionScore"),
        coordinate_map.alias("coordinateScores"), metadata.alias("metadataMap"), *[f"_has_{n}" for n in names])
    return result, loaded, names


def score(spark: SparkSession, data: dict[str, str], models: list[CoordinateModel], output: str,
          model_id: str = "game", columns: ColumnNames = ColumnNames(), policy: BadRecordPolicy = "fail",
          files: int = 2, id_fields: tuple[str, ...] = (), dates: DatedDays | None = None) -> dict[str, Any]:
    if not models:
        raise ConfigError("scoring needs at least one coordinate model (--model, --fixed-effect, --random-effect)")
    output = qualified(output)
    report = JobReport("score", {"data": data, "output": output, "model_id": model_id,
                                 "coordinates": [m.to_flag() for m in models], "policy": policy,
                                 "id_fields": list(id_fields)})
    schema = json.dumps(raw_schema("ScoringResult"))
    with publish_atomically(output) as tmp:
        for name, uri in data.items():
            result, loaded, names = score_frame(spark, name, qualified(uri), models, model_id, columns, policy,
                                                 id_fields, dates)
            # counted while writing (an Observation), so the data is computed once
            observation = Observation(f"score-{name}-{id(result)}")
            written = result.observe(observation, F.count(F.lit(1)).alias("rows"),
                                     *[F.sum(f"_has_{n}").alias(n) for n in names])
            # repartition, not coalesce: coalescing would run the joins and the scoring in ``files`` tasks
            (written.select("uid", "label", "weight", "modelId", "predictionScore", "coordinateScores", "metadataMap")
             .repartition(files).write.format("avro").option("avroSchema", schema).save(join(tmp, name)))
            totals = observation.get
            counts = loaded.check()
            for model in models:
                missing = int(totals["rows"]) - int(totals[model.name] or 0)
                if model.type == "scores" and missing:
                    example = result.filter(F.col(f"_has_{model.name}") == 0).select("uid").limit(3).collect()
                    raise DataError(f"{missing} row(s) have no score from coordinate {model.name} (e.g. uid "
                                    f"{', '.join(str(r['uid']) for r in example)})", path=model.scores(name),
                                    field="uid")
            report.counters[name] = {
                "input": uri, "rows_in": counts["rows_in"], "rows_scored": int(totals["rows"]),
                "dropped": dropped_by_reason(counts),
                "rows_with_model": {n: int(totals[n] or 0) for n in names}}
        report.write_into(tmp)
    return report.to_dict()


def pointed_model(pointer: str) -> str:
    """The GAME model a pointer file names (``{"model": URI}``; e.g. the registry's production version)."""
    try:
        return str(json.loads(storage_for(pointer).read_bytes(pointer))["model"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{pointer}: expected JSON with a \"model\" key naming a GAME model directory") from None
