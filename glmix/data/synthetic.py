"""Synthetic GLMix data with a known ground-truth model, so recovery can be measured.

The world: entity types (e.g. users and items) with categorical attributes in their own feature
bags, Zipf-skewed popularity, and a context bag of sparse Gaussian features per row. The truth:
a global (fixed-effect) GLM over every bag, plus per-entity random effects, each over another
bag (a user's taste for item attributes, an item's appeal to user attributes) with its own
intercept, all drawn from known Gaussian priors. Rows are generated part by part, each part from
its own seed, so output is deterministic and memory stays bounded by one part.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from glmix.errors import ConfigError
from glmix.io.avro import write_avro_file
from glmix.io.schemas import INTERCEPT_NAME, training_example_schema
from glmix.io.storage import join, publish_atomically, storage_for
from glmix.model.linear_model import LinearModel, write_models

Task = Literal["logistic", "linear", "poisson"]
NONLINEAR_TERMS = 4


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttributeSpec(_Spec):
    """A categorical attribute of an entity; each entity takes ``per_entity`` distinct levels."""

    name: str
    levels: list[str] = Field(min_length=1)
    per_entity: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> AttributeSpec:
        if self.per_entity > len(self.levels):
            raise ValueError(f"attribute {self.name}: per_entity {self.per_entity} > {len(self.levels)} levels")
        return self

    @classmethod
    def numbered(cls, name: str, cardinality: int, per_entity: int = 1) -> AttributeSpec:
        return cls(name=name, levels=[str(i) for i in range(cardinality)], per_entity=per_entity)


class EntitySpec(_Spec):
    """An entity type with a random effect, e.g. users."""

    id_field: str
    count: int = Field(ge=1)
    zipf_exponent: float = Field(1.0, ge=0)
    top_share: float | None = Field(None, gt=0, lt=1, description="the most popular entity's share of all rows "
                                                                  "(a skewed world); the others keep their Zipf "
                                                                  "proportions")
    feature_bag: str
    attributes: list[AttributeSpec]
    random_effect_bag: str
    random_effect_std: float = Field(0.8, ge=0)
    intercept_std: float = Field(0.5, ge=0)


class ContextSpec(_Spec):
    """Row-level sparse Gaussian features (names c0, c1, ...) in the default bag."""

    bag: str = "features"
    dimension: int = Field(100, ge=0)
    nnz: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _fits(self) -> ContextSpec:
        if self.nnz > self.dimension:
            raise ValueError(f"context nnz {self.nnz} > dimension {self.dimension}")
        return self


class SyntheticSpec(_Spec):
    task: Task = "logistic"
    rows: int = Field(ge=1)
    validation_fraction: float = Field(0.2, ge=0, lt=1)
    seed: int = 0
    rows_per_file: int = Field(100_000, ge=1)
    intercept: float = 0.0
    global_std: float = Field(1.0, ge=0)
    noise_std: float = Field(0.5, ge=0)
    nonlinear_std: float = Field(0.0, ge=0, description="std of a global effect no GLM can fit: products of "
                                                        "pairs of random projections of the context features")
    context: ContextSpec = ContextSpec()
    entities: list[EntitySpec]

    @model_validator(mode="after")
    def _bags_exist(self) -> SyntheticSpec:
        bags = {self.context.bag} | {e.feature_bag for e in self.entities}
        for entity in self.entities:
            if entity.random_effect_bag not in bags:
                raise ValueError(f"entity {entity.id_field}: random_effect_bag {entity.random_effect_bag!r} "
                                 f"is none of the bags {sorted(bags)}")
        return self

    @property
    def bags(self) -> list[str]:
        return [self.context.bag] + [e.feature_bag for e in self.entities]


def movielens_spec(rows: int = 100_000, seed: int = 0) -> SyntheticSpec:
    """ml-100k's shape (943 users, 1682 movies, ~100k ratings, binary 'liked' label), synthetic values.

    As in real ratings, per-entity biases (intercepts) are wide and tastes (slopes) are small: with
    ~85 rows a user and ~60 a movie, that is a world whose truth the data can identify. Wide tastes
    (e.g. slope std 1.0 over a user's 27 movie features) cannot be estimated from so few rows by any
    estimator: even one given the true prior and every other true component falls ~0.06 AUC short.
    """
    occupations = ["administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
                   "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
                   "retired", "salesman", "scientist", "student", "technician", "writer"]
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
              "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
              "War", "Western"]
    users = EntitySpec(
        id_field="userId", count=943, zipf_exponent=0.45, feature_bag="userFeatures",
        attributes=[AttributeSpec(name="age", levels=["1", "18", "25", "35", "45", "50", "56"]),
                    AttributeSpec(name="gender", levels=["M", "F"]),
                    AttributeSpec(name="occupation", levels=occupations)],
        random_effect_bag="movieFeatures", random_effect_std=0.2, intercept_std=1.3)
    movies = EntitySpec(
        id_field="movieId", count=1682, zipf_exponent=0.7, feature_bag="movieFeatures",
        attributes=[AttributeSpec(name="genre", levels=genres, per_entity=2),
                    AttributeSpec(name="decade", levels=[f"{y}s" for y in range(1920, 2000, 10)])],
        random_effect_bag="userFeatures", random_effect_std=0.15, intercept_std=1.3)
    return SyntheticSpec(task="logistic", rows=rows, seed=seed, rows_per_file=50_000, intercept=0.2,
                         global_std=2.5, context=ContextSpec(dimension=20, nnz=3), entities=[users, movies])


def generic_spec(rows: int, users: int, items: int, task: Task = "logistic", context_dimension: int = 1000,
                 context_nnz: int = 20, seed: int = 0) -> SyntheticSpec:
    """Users and items with numbered attributes, sized for benchmarks (about context_nnz + 10 nnz per row)."""
    user = EntitySpec(id_field="userId", count=users, zipf_exponent=1.0, feature_bag="userFeatures",
                      attributes=[AttributeSpec.numbered(f"u{k}", 8) for k in range(5)],
                      random_effect_bag="itemFeatures")
    item = EntitySpec(id_field="itemId", count=items, zipf_exponent=1.0, feature_bag="itemFeatures",
                      attributes=[AttributeSpec.numbered(f"i{k}", 8) for k in range(5)],
                      random_effect_bag="userFeatures", random_effect_std=0.5)
    return SyntheticSpec(task=task, rows=rows, seed=seed, rows_per_file=250_000,
                         context=ContextSpec(dimension=context_dimension, nnz=context_nnz), entities=[user, item])


PRESETS: dict[str, Callable[..., SyntheticSpec]] = {"movielens": movielens_spec, "generic": generic_spec}


@dataclass
class _Vocabulary:
    """The (name, term) keys of one bag, in index order."""

    keys: list[tuple[str, str]]

    @classmethod
    def of_attributes(cls, attributes: list[AttributeSpec]) -> _Vocabulary:
        return cls([(a.name, level) for a in attributes for level in a.levels])

    @classmethod
    def of_context(cls, context: ContextSpec) -> _Vocabulary:
        return cls([(f"c{j}", "") for j in range(context.dimension)])


def _distinct_sorted(rng: np.random.Generator, rows: int, k: int, n: int) -> np.ndarray:
    """rows x k distinct indices in [0, n) per row (sorted multiset of [0, n-k] shifted by 0..k-1)."""
    if k == 0:
        return np.zeros((rows, 0), dtype=np.int64)
    draws = np.sort(rng.integers(0, n - k + 1, size=(rows, k)), axis=1)
    return draws + np.arange(k)


class _EntityTable:
    """One entity type: attributes (as vocabulary indices), popularity and true random effects."""

    def __init__(self, spec: EntitySpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.vocabulary = _Vocabulary.of_attributes(spec.attributes)
        columns, offset = [], 0
        for attribute in spec.attributes:
            columns.append(offset + _distinct_sorted(rng, spec.count, attribute.per_entity, len(attribute.levels)))
            offset += len(attribute.levels)
        self.attribute_index = np.hstack(columns)  # (count, nnz) vocabulary indices
        weights = 1.0 / np.arange(1, spec.count + 1) ** spec.zipf_exponent
        if spec.top_share is not None and spec.count > 1:
            weights = np.concatenate([[spec.top_share], (1 - spec.top_share) * weights[1:] / weights[1:].sum()])
        ranks = rng.permutation(spec.count)  # popularity rank of each entity, so ids are not sorted by size
        self.cdf = np.cumsum(weights[ranks] / weights.sum())
        self.ids = np.array([f"{spec.id_field[0]}{i}" for i in range(spec.count)], dtype=object)

    @property
    def nnz(self) -> int:
        return self.attribute_index.shape[1]

    def sample(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(rows)), self.spec.count - 1)


class World:
    """Everything drawn once from the seed: entity tables and the true model."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.spec = spec
        rng = np.random.default_rng([spec.seed, 0])
        self.entities = [_EntityTable(e, rng) for e in spec.entities]
        self.vocabularies = {spec.context.bag: _Vocabulary.of_context(spec.context)}
        self.bag_nnz = {spec.context.bag: spec.context.nnz}
        for table in self.entities:
            self.vocabularies[table.spec.feature_bag] = _Vocabulary.of_attributes(table.spec.attributes)
            self.bag_nnz[table.spec.feature_bag] = table.nnz
        total_nnz = max(1, sum(self.bag_nnz.values()))
        # Coefficient scale chosen so each component's score has roughly the requested std.
        self.global_coefficients = {bag: rng.normal(0, spec.global_std / math.sqrt(total_nnz), len(v.keys))
                                    for bag, v in self.vocabularies.items()}
        self.random_effects: list[tuple[np.ndarray, np.ndarray]] = []
        for table in self.entities:
            bag = table.spec.random_effect_bag
            scale = table.spec.random_effect_std / math.sqrt(max(1, self.bag_nnz[bag]))
            coefficients = rng.normal(0, scale, (table.spec.count, len(self.vocabularies[bag].keys)))
            intercepts = rng.normal(0, table.spec.intercept_std, table.spec.count)
            self.random_effects.append((coefficients, intercepts))
        self.interactions: tuple[np.ndarray, np.ndarray] | None = None
        if spec.nonlinear_std > 0:   # drawn last, so worlds without it are unchanged
            scale = 1.0 / math.sqrt(max(1, spec.context.nnz))
            self.interactions = (rng.normal(0, scale, (spec.context.dimension, NONLINEAR_TERMS)),
                                 rng.normal(0, scale, (spec.context.dimension, NONLINEAR_TERMS)))

    # ------------------------------------------------------------------ rows
    def part(self, part_index: int, rows: int) -> dict[str, Any]:
        """Generate one part's rows as arrays (vectorized); deterministic in (seed, part_index)."""
        spec = self.spec
        rng = np.random.default_rng([spec.seed, 1, part_index])
        context_index = _distinct_sorted(rng, rows, spec.context.nnz, spec.context.dimension)
        context_value = rng.normal(0, 1, context_index.shape)
        entity_rows = [table.sample(rng, rows) for table in self.entities]
        bag_index = {spec.context.bag: context_index}
        bag_value = {spec.context.bag: context_value}
        for table, chosen in zip(self.entities, entity_rows, strict=True):
            bag_index[table.spec.feature_bag] = table.attribute_index[chosen]
            bag_value[table.spec.feature_bag] = np.ones((rows, table.nnz))
        score = np.full(rows, spec.intercept)
        for bag, index in bag_index.items():
            score += (self.global_coefficients[bag][index] * bag_value[bag]).sum(axis=1)
        score += self.nonlinear_effect(context_index, context_value)
        for table, chosen, (coefficients, intercepts) in zip(self.entities, entity_rows, self.random_effects,
                                                             strict=True):
            bag = table.spec.random_effect_bag
            gathered = np.take_along_axis(coefficients[chosen], bag_index[bag], axis=1)
            score += intercepts[chosen] + (gathered * bag_value[bag]).sum(axis=1)
        label = self._draw_label(rng, score)
        is_validation = rng.random(rows) < spec.validation_fraction
        return {"score": score, "label": label, "validation": is_validation, "entities": entity_rows,
                "bag_index": bag_index, "bag_value": bag_value}

    def nonlinear_effect(self, index: np.ndarray, value: np.ndarray) -> np.ndarray:
        """sum_k (c.a_k)(c.b_k) / sqrt(K) * nonlinear_std: zero-mean, no linear part, std ~ nonlinear_std."""
        if self.interactions is None:
            return np.zeros(len(index))
        a, b = self.interactions
        left = np.einsum("rn,rnk->rk", value, a[index])
        right = np.einsum("rn,rnk->rk", value, b[index])
        return self.spec.nonlinear_std * (left * right).sum(axis=1) / math.sqrt(NONLINEAR_TERMS)

    def _draw_label(self, rng: np.random.Generator, score: np.ndarray) -> np.ndarray:
        task = self.spec.task
        if task == "logistic":
            return (rng.random(score.shape) < 1 / (1 + np.exp(-score))).astype(float)
        if task == "poisson":
            return rng.poisson(np.exp(np.minimum(score, 20))).astype(float)
        return score + rng.normal(0, self.spec.noise_std, score.shape)

    def records(self, first_row: int, arrays: dict[str, Any],
                validation: bool) -> Iterator[dict[str, Any]]:
        """Avro records of one part's train (or validation) rows."""
        selected = np.flatnonzero(arrays["validation"] == validation)
        keys = {bag: self.vocabularies[bag].keys for bag in arrays["bag_index"]}
        for row in selected:
            record = {"uid": str(first_row + row), "label": float(arrays["label"][row]),
                      "weight": None, "offset": None, "metadataMap": None}
            for bag, index in arrays["bag_index"].items():
                values = arrays["bag_value"][bag][row]
                bag_keys = keys[bag]
                record[bag] = [{"name": bag_keys[i][0], "term": bag_keys[i][1], "value": float(v)}
                               for i, v in zip(index[row], values, strict=True)]
            for table, chosen in zip(self.entities, arrays["entities"], strict=True):
                record[table.spec.id_field] = table.ids[chosen[row]]
            yield record

    # ------------------------------------------------------------------ truth
    def true_models(self) -> dict[str, list[LinearModel]]:
        """The generating model in the model schema: 'fixed-effect' and one list per entity field."""
        task = self.spec.task
        means = {(INTERCEPT_NAME, ""): self.spec.intercept}
        for bag, coefficients in self.global_coefficients.items():
            means.update(zip(self.vocabularies[bag].keys, coefficients.tolist(), strict=True))
        models = {"fixed-effect": [LinearModel("global", task, means)]}
        for table, (coefficients, intercepts) in zip(self.entities, self.random_effects, strict=True):
            keys = self.vocabularies[table.spec.random_effect_bag].keys
            models[table.spec.id_field] = [
                LinearModel(str(table.ids[e]), task,
                            {(INTERCEPT_NAME, ""): float(intercepts[e]), **dict(zip(keys, coefficients[e].tolist(),
                                                                                   strict=True))})
                for e in range(table.spec.count)]
        return models


@dataclass
class GenerationSummary:
    """What was written, for the CLI table and metadata.json."""

    output: str
    train_rows: int
    validation_rows: int
    label_mean: float
    rows_per_entity: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _entity_size_stats(counts: np.ndarray) -> dict[str, float]:
    seen = np.sort(counts[counts > 0])[::-1]
    top = max(1, len(seen) // 100)
    return {"entities_seen": int(len(seen)), "min": int(seen[-1]), "median": float(np.median(seen)),
            "max": int(seen[0]), "top_1pct_row_share": float(seen[:top].sum() / seen.sum())}


_WORKER_WORLD: World | None = None


def _init_worker(spec: SyntheticSpec) -> None:
    """Each worker process draws the (deterministic) world once."""
    global _WORKER_WORLD
    _WORKER_WORLD = World(spec)


def _write_part(schema: dict[str, Any], tmp: str, part: int) -> dict[str, Any]:
    """Generate and write one part (train and validation files); return its counters."""
    world = _WORKER_WORLD
    assert world is not None
    spec = world.spec
    first = part * spec.rows_per_file
    rows = min(spec.rows_per_file, spec.rows - first)
    arrays = world.part(part, rows)
    for split, is_validation in (("train", False), ("validation", True)):
        write_avro_file(join(tmp, split, f"part-{part:05d}.avro"), schema,
                        world.records(first, arrays, is_validation))
    return {"rows": rows, "validation": int(arrays["validation"].sum()), "label_sum": float(arrays["label"].sum()),
            "entity_counts": [np.bincount(chosen, minlength=e.count)
                              for e, chosen in zip(spec.entities, arrays["entities"], strict=True)]}


def generate(spec: SyntheticSpec, output: str, progress: Callable[[int], None] | None = None,
             processes: int = 1) -> GenerationSummary:
    """Write train/ and validation/ Avro parts, truth/ models and metadata.json under ``output``.

    Parts are independent (each has its own seed), so ``processes`` > 1 writes them in parallel
    with identical output. The whole output is published atomically: a failure leaves no partial
    dataset behind.
    """
    schema = training_example_schema(tuple(spec.bags[1:]), tuple(e.id_field for e in spec.entities))
    entity_counts = [np.zeros(e.count, dtype=np.int64) for e in spec.entities]
    train_rows = validation_rows = 0
    label_sum = 0.0
    parts = range(math.ceil(spec.rows / spec.rows_per_file))
    with publish_atomically(output) as tmp:
        if processes > 1:
            pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"), initializer=_init_worker,
                                       initargs=(spec,))
            results = pool.map(partial(_write_part, schema, tmp), parts)
        else:
            pool = None
            _init_worker(spec)
            results = map(partial(_write_part, schema, tmp), parts)
        try:
            for result in results:
                train_rows += result["rows"] - result["validation"]
                validation_rows += result["validation"]
                label_sum += result["label_sum"]
                for counts, part_counts in zip(entity_counts, result["entity_counts"], strict=True):
                    counts += part_counts
                if progress:
                    progress(result["rows"])
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        world = _WORKER_WORLD if pool is None else World(spec)
        assert world is not None
        for name, models in world.true_models().items():
            sub = "fixed-effect" if name == "fixed-effect" else join("random-effect", name)
            write_models(join(tmp, "truth", sub), models)
        summary = GenerationSummary(
            output=output, train_rows=train_rows, validation_rows=validation_rows,
            label_mean=label_sum / spec.rows,
            rows_per_entity={e.id_field: _entity_size_stats(c) for e, c in zip(spec.entities, entity_counts,
                                                                                strict=True)})
        metadata = {"spec": spec.model_dump(), "summary": summary.to_dict()}
        storage_for(tmp).write_bytes(join(tmp, "metadata.json"), json.dumps(metadata, indent=2).encode())
    return summary


def load_spec(preset: str, **overrides: Any) -> SyntheticSpec:
    """A preset with keyword overrides; errors name the offending key."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    try:
        return PRESETS[preset](**{k: v for k, v in overrides.items() if v is not None})
    except TypeError as exc:
        raise ConfigError(f"preset {preset}: {exc}") from exc
