"""One YAML file per GAME model: data, shards, coordinates, passes, evaluators, resources, output.

    name: movielens-glmix
    task: logistic
    input: {train: data/train, validation: data/validation}
    output: out/movielens
    feature_shards:
      - {name: global, bags: [features, userFeatures, movieFeatures]}
      - {name: movie, bags: [movieFeatures]}
    coordinates:
      global:   {type: fixed, shard: global, l2: 1.0}
      per-user: {type: random, shard: movie, entity_field: userId, lower_bound: 2, l2: [0.1, 1, 10]}
    update_sequence: [global, per-user]
    passes: 2
    evaluators: [AUC, LOGISTIC_LOSS, "AUC:userId", "PRECISION@5:userId"]

A list of ``l2`` (or ``l1``) values makes a regularization grid: every combination over the
coordinates is one coordinate-descent run, and the best run on the first evaluator wins.
Everything is validated when the file is read; an error names the key (``coordinates.per-user.shard:
no feature shard named 'movie'``).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from glmix.config import BadRecordPolicy, FeatureShard, Settings, Task
from glmix.errors import ConfigError, run_command
from glmix.examples import ColumnNames
from glmix.metrics import HIGHER_IS_BETTER

NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
EVALUATOR = re.compile(r"^(?P<metric>AUC|AUPR|LOGISTIC_LOSS|RMSE|POISSON_LOSS|PRECISION@(?P<k>[1-9][0-9]*))"
                       r"(:(?P<group>[A-Za-z_][A-Za-z0-9_]*))?$")
RegWeight = Annotated[float, Field(ge=0)]


class Inputs(Settings):
    train: str
    validation: str


class KerasSettings(Settings):
    """A deep fixed effect (``model_type: keras``): see glmix.keras_fixed_effect."""

    model: str = Field("glmix.keras_models:wide_and_deep", pattern=r"^[\w.]+:\w+$")
    model_args: dict[str, Any] = {}
    optimizer: Literal["adam", "adagrad", "rmsprop", "sgd"] = "adam"
    learning_rate: float = Field(0.003, gt=0)
    epochs: int = Field(5, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    batch_size: int = Field(512, ge=1)


class CoordinateConfig(Settings):
    """One coordinate: the fixed effect (``type: fixed``, a GLM or ``model_type: keras``), scores made
    elsewhere used as the fixed effect (``type: external``), or a random effect (``type: random``)."""

    type: Literal["fixed", "random", "external"]
    shard: str | None = None
    model_type: Literal["glm", "keras"] = "glm"
    keras: KerasSettings | None = Field(None, description="settings of a keras fixed effect (defaults if unset)")
    scores: Inputs | None = Field(None, description="external: uid/score Avro or Parquet for train and validation")
    entity_field: str | None = Field(None, description="random effects: the entity id field, e.g. userId")
    l2: RegWeight | list[RegWeight] = 1.0
    l1: RegWeight | list[RegWeight] = 0.0
    intercept_l2: RegWeight | None = Field(None, description="random effects: the intercept's L2 weight (default: "
                                                             "l2); entity biases are often wider than their slopes")
    lower_bound: int = Field(1, ge=1, description="active-data lower bound: rows an entity needs for a model")
    upper_bound: int | None = Field(None, ge=1, description="active-data upper bound: down-sample above it")
    max_iterations: int | None = Field(None, ge=1)
    variance: Literal["none", "simple", "full"] = "none"
    compute: Literal["tensorflow", "scipy"] | None = Field(
        None, description="fixed-effect GLM: each worker's loss and gradient with TensorFlow (default) or "
                          "scipy.sparse (no TensorFlow import; the all-reduce of several workers stays TensorFlow's)")

    @model_validator(mode="after")
    def _fields_for_type(self) -> CoordinateConfig:
        if self.type == "random" and not self.entity_field:
            raise ValueError("a random effect needs entity_field")
        if self.type != "random" and self.entity_field:
            raise ValueError(f"a {self.type} coordinate has no entity_field")
        if (self.type == "external") != (self.scores is not None):
            raise ValueError("scores is set for, and only for, an external coordinate")
        if self.type != "external" and not self.shard:
            raise ValueError(f"a {self.type} coordinate needs shard")
        if self.model_type == "keras" and self.type != "fixed":
            raise ValueError("model_type keras is for the fixed effect")
        if self.keras is not None and self.model_type != "keras":
            raise ValueError("keras settings need model_type: keras")
        if self.intercept_l2 is not None and self.type != "random":
            raise ValueError("intercept_l2 is a setting of a random effect")
        if self.compute is not None and (self.type != "fixed" or self.model_type != "glm"):
            raise ValueError("compute is a setting of a fixed-effect GLM")
        if self.upper_bound is not None and self.upper_bound < self.lower_bound:
            raise ValueError("upper_bound must be >= lower_bound")
        return self

    def grid(self) -> list[tuple[float, float]]:
        """Every (l2, l1) pair this coordinate's regularization lists span."""
        as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        return list(itertools.product(as_list(self.l2), as_list(self.l1)))


class SparkResources(Settings):
    master: str = "local[2]"
    executors: int = Field(2, ge=1)
    executor_memory: str = Field("1g", pattern=r"^[0-9]+[kmgt]?$")
    partitions: int = Field(4, ge=1, description="random-effect partitions and fixed-effect files")


class LauncherResources(Settings):
    backend: Literal["local", "yarn"] = "local"
    workers: int = Field(1, ge=1)
    memory: int = Field(2048, ge=256, description="MB per worker container")
    max_attempts: int = Field(2, ge=1)


class Resources(Settings):
    spark: SparkResources = SparkResources()
    launcher: LauncherResources = LauncherResources()


class FlowSettings(Settings):
    retries: int = Field(1, ge=0, description="Azkaban retries of a failed stage")
    retry_backoff_ms: int = Field(30_000, ge=0)


class GameConfig(Settings):
    name: str = Field(pattern=NAME)
    task: Task
    input: Inputs
    output: str
    columns: ColumnNames = ColumnNames()
    bad_records: BadRecordPolicy = "fail"
    feature_shards: list[FeatureShard] = Field(min_length=1)
    coordinates: dict[str, CoordinateConfig] = Field(min_length=1)
    update_sequence: list[str] = Field(min_length=1)
    passes: int = Field(1, ge=1)
    evaluators: list[str] = Field(["AUC"], min_length=1)
    resources: Resources = Resources()
    flow: FlowSettings = FlowSettings()

    @field_validator("coordinates")
    @classmethod
    def _coordinate_names(cls, coordinates: dict[str, CoordinateConfig]) -> dict[str, CoordinateConfig]:
        for name in coordinates:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"coordinate name {name!r} must match {NAME}")
        if sum(c.type in ("fixed", "external") for c in coordinates.values()) > 1:
            raise ValueError("at most one fixed-effect coordinate (fixed or external)")
        return coordinates

    @field_validator("columns")
    @classmethod
    def _renamable_columns(cls, columns: ColumnNames) -> ColumnNames:
        """The jobs take --response; the other Photon column names must be the defaults in a flow."""
        for key, default in ColumnNames().model_dump().items():
            if key != "response" and getattr(columns, key) != default:
                raise ValueError(f"{key}: only response can be renamed in a GAME config (keep {default!r})")
        return columns

    @field_validator("evaluators")
    @classmethod
    def _evaluators(cls, evaluators: list[str]) -> list[str]:
        for evaluator in evaluators:
            if not EVALUATOR.match(evaluator):
                raise ValueError(f"unknown evaluator {evaluator!r} (AUC, AUPR, LOGISTIC_LOSS, RMSE, POISSON_LOSS, "
                                 "PRECISION@k, each optionally grouped as NAME:idField)")
            if evaluator.startswith("PRECISION@") and ":" not in evaluator:
                raise ValueError(f"{evaluator} needs a group, e.g. {evaluator}:userId")
        return evaluators

    @model_validator(mode="after")
    def _references(self) -> GameConfig:
        shards = {s.name for s in self.feature_shards}
        if len(shards) != len(self.feature_shards):
            raise ValueError("feature_shards: names must be distinct")
        for name, coordinate in self.coordinates.items():
            if coordinate.shard is not None and coordinate.shard not in shards:
                raise ValueError(f"coordinates.{name}.shard: no feature shard named {coordinate.shard!r}")
        for name in self.update_sequence:
            if name not in self.coordinates:
                raise ValueError(f"update_sequence: no coordinate named {name!r}")
        if len(set(self.update_sequence)) != len(self.update_sequence):
            raise ValueError("update_sequence: a coordinate appears twice")
        return self

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> GameConfig:
        return cls.parse(data, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> GameConfig:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config is a mapping of keys")
        try:
            return cls.parse(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    def resolved(self, base: Path) -> GameConfig:
        """Relative local paths made absolute against ``base`` (URIs such as hdfs:// stay as they are)."""
        def absolute(path: str) -> str:
            return path if "://" in path or Path(path).is_absolute() else str((base / path).resolve())

        coordinates = {name: c.model_copy(update={"scores": Inputs(train=absolute(c.scores.train),
                                                                   validation=absolute(c.scores.validation))})
                       if c.scores else c for name, c in self.coordinates.items()}
        return self.model_copy(update={
            "coordinates": coordinates,
            "input": Inputs(train=absolute(self.input.train), validation=absolute(self.input.validation)),
            "output": absolute(self.output)})

    # ------------------------------------------------------------------ derived
    def shard(self, name: str) -> FeatureShard:
        return next(s for s in self.feature_shards if s.name == name)

    @property
    def entity_fields(self) -> list[str]:
        return sorted({c.entity_field for c in self.coordinates.values() if c.entity_field})

    @property
    def id_fields(self) -> list[str]:
        """Every id the scores must carry: random-effect entities and grouped evaluators' groups."""
        groups = {m["group"] for e in self.evaluators if (m := EVALUATOR.match(e))["group"]}
        return sorted(set(self.entity_fields) | groups)

    @property
    def fixed_effect(self) -> str | None:
        return next((n for n, c in self.coordinates.items() if c.type == "fixed"), None)

    @property
    def primary_metric(self) -> str:
        return self.evaluators[0]

    def higher_is_better(self) -> bool:
        return higher_is_better(self.primary_metric)

    def grid(self) -> list[dict[str, tuple[float, float]]]:
        """The regularization runs: one {coordinate: (l2, l1)} per combination (one run without lists)."""
        names = list(self.update_sequence)
        combos = itertools.product(*(self.coordinates[n].grid() for n in names))
        return [dict(zip(names, combo, strict=True)) for combo in combos]


def config_command(prog: str, argv: list[str] | None, action: Callable[[GameConfig], str]) -> int:
    """``python -m PROG CONFIG.yaml``: the flow's Python stages take the project's config and nothing else."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {prog} CONFIG.yaml", file=sys.stderr)
        return 2
    return run_command(lambda: action(GameConfig.from_yaml(args[0])))


def higher_is_better(evaluator: str) -> bool:
    metric = EVALUATOR.match(evaluator)["metric"]
    return True if metric.startswith("PRECISION@") else HIGHER_IS_BETTER[metric]
