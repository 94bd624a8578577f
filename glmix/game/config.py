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
coordinates is one coordinate-descent run, and the best run on the first evaluator wins. A random
effect's ``l2: auto`` (and ``intercept_l2: auto``) learns its prior variances from the data in the
run instead (glmix.train.prior_variance); so does a fixed effect's ``l2: auto``. A ``search:``
section spreads a budget of runs over ranges of weights instead of a grid (glmix.game.search).
Everything is validated when the file is read; an error names the key (``coordinates.per-user.shard:
no feature shard named 'movie'``).
"""

from __future__ import annotations

import html
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import yaml
from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from glmix.errors import ConfigError, run_command
from glmix.flow.loader_rules import is_quartz_cron
from glmix.game.search import SearchSettings
from glmix.glm.metrics import Evaluator
from glmix.io.dated import DateRange
from glmix.io.examples import ColumnNames
from glmix.model.game_model import ModelKind
from glmix.settings import BadRecordPolicy, DataGateSettings, FeatureShard, Settings, Task
from glmix.train.warm_start import VarianceKind

NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
RegWeight = Annotated[float, Field(ge=0)]
L2Weight = RegWeight | Literal["auto"]


class Inputs(Settings):
    """Training and validation data: directories (or files) of Avro or Parquet; with ``*_dates``,
    roots holding ``daily/YYYY/MM/DD/`` of which the given days are read (glmix.io.dated)."""

    train: str
    validation: str
    train_dates: DateRange | None = None
    validation_dates: DateRange | None = None


class KerasSettings(Settings):
    """A deep fixed effect (``model_type: keras``): see glmix.train.keras_fixed_effect."""

    model: str = Field("glmix.train.keras_models:wide_and_deep", pattern=r"^[\w.]+:\w+$")
    model_args: dict[str, Any] = {}
    optimizer: Literal["adam", "adagrad", "rmsprop", "sgd"] = "adam"
    learning_rate: float = Field(0.003, gt=0)
    epochs: int = Field(5, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    batch_size: int = Field(512, ge=1)


class _Regularized(Settings):
    """What every trained GLM coordinate has: its shard and penalties (a list of values is a grid)."""

    shard: str
    l2: L2Weight | list[RegWeight] = 1.0
    l1: RegWeight | list[RegWeight] = 0.0
    max_iterations: int | None = Field(None, ge=1)
    variance: VarianceKind = "none"

    @model_validator(mode="after")
    def _learned_without_l1(self) -> _Regularized:
        if "auto" in (self.l2, getattr(self, "intercept_l2", None)) and self.l1 != 0:
            raise ValueError("l2: auto learns a Gaussian prior, which an L1 penalty would change; set l1 to 0")
        return self

    def grid(self) -> list[tuple[L2Weight, float]]:
        """Every (l2, l1) pair this coordinate's regularization lists span."""
        l2: list[L2Weight] = ["auto"] if isinstance(self.l2, str) else [*_as_list(self.l2)]
        return list(itertools.product(l2, _as_list(self.l1)))


def _as_list(value: float | list[float]) -> list[float]:
    return value if isinstance(value, list) else [value]


class FixedGlmCoordinate(_Regularized):
    """The fixed effect as a GLM, trained by glmix.train.fixed_effect through the launcher."""

    type: Literal["fixed"]
    model_type: Literal["glm"] = "glm"
    compute: Literal["tensorflow", "scipy"] | None = Field(
        None, description="each worker's loss and gradient with TensorFlow (default) or scipy.sparse (no "
                          "TensorFlow import; the all-reduce of several workers stays TensorFlow's)")
    solver: Literal["lbfgs", "tron"] | None = Field(None, description="L-BFGS / OWL-QN (default) or TRON "
                                                                      "(trust-region Newton; no L1)")

    @model_validator(mode="after")
    def _fixed_weights(self) -> FixedGlmCoordinate:
        if self.solver == "tron" and self.l1 != 0:
            raise ValueError("solver tron needs a smooth objective: no L1 (use lbfgs, whose OWL-QN handles it)")
        return self

    @property
    def kind(self) -> ModelKind:
        return "fixed"


class FixedKerasCoordinate(Settings):
    """The fixed effect as a deep network (glmix.train.keras_fixed_effect); the flow uses its scores."""

    type: Literal["fixed"]
    model_type: Literal["keras"]
    shard: str
    keras: KerasSettings = KerasSettings()

    @property
    def kind(self) -> ModelKind:
        return "scores"

    def grid(self) -> list[tuple[L2Weight, float]]:
        return [(0.0, 0.0)]


class RandomCoordinate(_Regularized):
    """Per-entity GLMs (jobs/train_random_effect) over the rows of each ``entity_field`` value."""

    type: Literal["random"]
    entity_field: str = Field(description="the entity id field, e.g. userId")
    intercept_l2: L2Weight | None = Field(None, description="the intercept's L2 weight (default: l2), or auto: "
                                                            "learned; entity biases are often wider than their slopes")
    lower_bound: int = Field(1, ge=1, description="active-data lower bound: rows an entity needs for a model")
    upper_bound: int | None = Field(None, ge=1, description="active-data upper bound: down-sample above it")

    @model_validator(mode="after")
    def _bounds(self) -> RandomCoordinate:
        if self.upper_bound is not None and self.upper_bound < self.lower_bound:
            raise ValueError("upper_bound must be >= lower_bound")
        return self

    @property
    def kind(self) -> ModelKind:
        return "random"


class ExternalCoordinate(Settings):
    """Scores made elsewhere used as the fixed effect: uid/score Avro or Parquet for train and validation."""

    type: Literal["external"]
    scores: Inputs

    @property
    def kind(self) -> ModelKind:
        return "scores"

    def grid(self) -> list[tuple[L2Weight, float]]:
        return [(0.0, 0.0)]


# the kind of coordinate each key belongs to
_OWNER = {"compute": "a fixed-effect GLM", "solver": "a fixed-effect GLM", "intercept_l2": "a random effect", "entity_field": "a random effect",
          "lower_bound": "a random effect", "upper_bound": "a random effect"}
_TAGS = {("fixed", "glm"): "fixed", ("fixed", "keras"): "keras", ("random", "glm"): "random",
         ("external", "glm"): "external"}
_VARIANTS: dict[str, type[Settings]] = {"fixed": FixedGlmCoordinate, "keras": FixedKerasCoordinate, "random": RandomCoordinate,
             "external": ExternalCoordinate}


def _coordinate_tag(value: Any) -> str | None:
    """The variant of a coordinate (from ``type`` and ``model_type``); None lets pydantic report a bad type."""
    if isinstance(value, dict):
        return _TAGS.get((str(value.get("type")), str(value.get("model_type", "glm"))))
    return _TAGS.get((value.type, getattr(value, "model_type", "glm")))


def _keys_fit_the_type(value: Any) -> Any:
    """A key of another kind of coordinate is named as such (pydantic alone would say "extra inputs
    are not permitted")."""
    if not isinstance(value, dict):
        return value
    kind, model_type = value.get("type"), value.get("model_type", "glm")
    if model_type == "keras" and kind != "fixed":
        raise ValueError("model_type keras is for the fixed effect")
    if "keras" in value and model_type != "keras":
        raise ValueError("keras settings need model_type: keras")
    if (kind == "external") != ("scores" in value):
        raise ValueError("scores is set for, and only for, an external coordinate")
    tag = _TAGS.get((str(kind), str(model_type)))
    for key in value:
        if tag is not None and key in _OWNER and key not in _VARIANTS[tag].model_fields:
            raise ValueError(f"{key} is a setting of {_OWNER[key]}")
    return value


Coordinate = FixedGlmCoordinate | FixedKerasCoordinate | RandomCoordinate | ExternalCoordinate
CoordinateConfig = Annotated[
    Annotated[FixedGlmCoordinate, Tag("fixed")] | Annotated[FixedKerasCoordinate, Tag("keras")]
    | Annotated[RandomCoordinate, Tag("random")] | Annotated[ExternalCoordinate, Tag("external")],
    Discriminator(_coordinate_tag, custom_error_type="coordinate_type",
                  custom_error_message="type must be fixed, random or external"),
    BeforeValidator(_keys_fit_the_type)]
"""One coordinate: ``type: fixed`` (a GLM, or ``model_type: keras``), ``external`` or ``random``."""


class SparkResources(Settings):
    master: str = "local[2]"
    executors: int = Field(2, ge=1)
    executor_memory: str = Field("1g", pattern=r"^[0-9]+[kmgt]?$")
    driver_memory: str = Field("1g", pattern=r"^[0-9]+[kmgt]?$",
                               description="a Spark stage's driver; in a YARN container when the flow is shipped")
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


class ScheduleSettings(Settings):
    """A scheduled flow: when Azkaban starts it (the ``.flow``'s trigger) and how long each run waits
    for its input days to be complete (their ``_SUCCESS`` markers) before failing."""

    cron: str = Field(description="a Quartz cron expression, e.g. '0 0 2 ? * *' for 02:00 every day")
    input_wait_minutes: float = Field(60.0, ge=0)
    poll_seconds: float = Field(60.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _quartz(cls, value: str) -> str:
        if not is_quartz_cron(value):
            raise ValueError(f"{value!r} is not a Quartz cron expression (seconds minutes hours day-of-month "
                             "month day-of-week [year], one of the two days '?'; at most once a minute)")
        return value


class RegistrySettings(Settings):
    """Where the flow registers the model it chose, and the model gate before promotion: the candidate
    and the production version scored on this run's validation data; promoted when its primary metric
    is no worse than production's by more than ``tolerance`` (and, with ``grouped``, the same for
    the grouped metrics), else rejected and the flow fails."""

    root: str
    model: str | None = Field(None, pattern=NAME, description="the registry's model name (default: the config's name)")
    tolerance: float = Field(0.0, ge=0)
    grouped: bool = Field(False, description="also gate on the grouped evaluators (e.g. AUC:userId)")
    promote: bool = Field(True, description="promote a candidate that passes (false: leave it a candidate)")


class RetrainSettings(Settings):
    """A retraining run starts from the registry's production version: each GLM coordinate's model
    there warm-starts pass 0 (``warm_start``) and, with ``prior``, is the Gaussian prior of
    incremental training in every pass (weighted by ``prior_weight``; it needs variances). The
    window of data is the dated inputs' (``input.train_dates: {last_days: N}``)."""

    warm_start: bool = True
    prior: bool = False
    prior_weight: float = Field(1.0, gt=0, description="the prior's weight (Photon ML's incremental weight)")


class TrackingSettings(Settings):
    """Where a flow's runs are logged besides the registry (which records every run): an MLflow
    tracking server, one MLflow run per flow run with a nested run per grid point."""

    mlflow: str = Field(description="the MLflow tracking URI, e.g. http://127.0.0.1:5000")
    experiment: str | None = Field(None, description="the MLflow experiment (default: the registry's model name)")


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
    schedule: ScheduleSettings | None = None
    registry: RegistrySettings | None = None
    data_gate: DataGateSettings | None = None
    tracking: TrackingSettings | None = None
    retrain: RetrainSettings | None = None
    search: SearchSettings | None = None

    @field_validator("coordinates")
    @classmethod
    def _coordinate_names(cls, coordinates: dict[str, Coordinate]) -> dict[str, Coordinate]:
        for name in coordinates:
            if not re.fullmatch(NAME, name):
                raise ValueError(f"coordinate name {name!r} must match {NAME}")
        if sum(c.type in ("fixed", "external") for c in coordinates.values()) > 1:
            raise ValueError("at most one fixed-effect coordinate (fixed or external)")
        return coordinates

    @field_validator("evaluators")
    @classmethod
    def _evaluators(cls, evaluators: list[str]) -> list[str]:
        for name in evaluators:
            evaluator = Evaluator.parse(name)   # its ValueError names the evaluator
            if evaluator.metric.startswith("PRECISION@") and not evaluator.group:
                raise ValueError(f"{name} needs a group, e.g. {name}:userId")
        return evaluators

    @model_validator(mode="after")
    def _searched(self) -> GameConfig:
        if self.search is None:
            return self
        for name in self.update_sequence:
            coordinate = self.coordinates.get(name)
            if any(isinstance(getattr(coordinate, w, None), list) for w in ("l1", "l2")):
                raise ValueError(f"search: coordinates.{name} has a list of weights (a grid); a flow runs a grid "
                                 "or a search, not both")
        for key in self.search.space:
            name, _, weight = key.rpartition(".")
            coordinate = self.coordinates.get(name)
            if name not in self.update_sequence or not isinstance(coordinate, FixedGlmCoordinate | RandomCoordinate):
                raise ValueError(f"search.space.{key}: no GLM coordinate named {name!r} in the update sequence")
            if getattr(coordinate, weight) == "auto":
                raise ValueError(f"search.space.{key}: coordinates.{name} learns its l2 (auto); search the others")
        return self

    @model_validator(mode="after")
    def _shards(self) -> GameConfig:
        shards = {s.name for s in self.feature_shards}
        if len(shards) != len(self.feature_shards):
            raise ValueError("feature_shards: names must be distinct")
        for name, coordinate in self.coordinates.items():
            if not isinstance(coordinate, ExternalCoordinate) and coordinate.shard not in shards:
                raise ValueError(f"coordinates.{name}.shard: no feature shard named {coordinate.shard!r}")
            if isinstance(coordinate, FixedKerasCoordinate) and self.shard(coordinate.shard).normalization != "none":
                raise ValueError(f"coordinates.{name}: feature shard {coordinate.shard!r} is normalized, which only "
                                 "a GLM coordinate does; give this coordinate a shard without it")
            if isinstance(coordinate, RandomCoordinate) and self.retrain and self.retrain.prior \
                    and self.shard(coordinate.shard).normalization != "none":
                raise ValueError(f"coordinates.{name}: feature shard {coordinate.shard!r} is normalized, so this "
                                 "random effect cannot be trained incrementally (retrain.prior)")
        return self

    @model_validator(mode="after")
    def _references(self) -> GameConfig:
        for name in self.update_sequence:
            if name not in self.coordinates:
                raise ValueError(f"update_sequence: no coordinate named {name!r}")
        if len(set(self.update_sequence)) != len(self.update_sequence):
            raise ValueError("update_sequence: a coordinate appears twice")
        if "${" in self.output:
            raise ValueError("output: flow properties (${...}) are not substituted in the config the Python "
                             "stages read; give a fixed path (dated inputs select each run's days)")
        if self.retrain and not self.registry:
            raise ValueError("retrain: starts from the registry's production version, so it needs a registry section")
        if self.retrain and self.retrain.prior:
            for name, coordinate in self.coordinates.items():
                if isinstance(coordinate, FixedGlmCoordinate | RandomCoordinate) and coordinate.variance == "none":
                    raise ValueError(f"retrain.prior: coordinates.{name} publishes no variances (variance: none), "
                                     "which an incremental prior needs; set variance: simple or full")
                if "auto" in (getattr(coordinate, "l2", None), getattr(coordinate, "intercept_l2", None)):
                    raise ValueError(f"retrain.prior: coordinates.{name} learns its prior from the data (l2: auto), "
                                     "which an incremental prior cannot be combined with")
        if self.tracking and not self.registry:
            raise ValueError("tracking: runs are recorded in the registry first (the source of truth), so "
                             "tracking needs a registry section")
        if self.data_gate and not self.registry:
            raise ValueError("data_gate: compares the training data with the production version's, so it "
                             "needs a registry section")
        if self.schedule and not (self.input.train_dates and self.input.validation_dates):
            raise ValueError("schedule: a scheduled flow reads dated input (input.train_dates and "
                             "input.validation_dates), so that each run reads its own days")
        return self

    # ------------------------------------------------------------------ reading
    @classmethod
    def _location(cls, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
        """``coordinates.NAME.random.l2`` -> ``coordinates.NAME.l2``: the union's tag is not a key."""
        if len(loc) > 2 and loc[0] == "coordinates" and loc[2] in _VARIANTS:
            return loc[:2] + loc[3:]
        return loc

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

    def to_yaml(self) -> str:
        """The config as a user writes it (what is not set is left out), e.g. to save a notebook's
        config as the flow's."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, width=100)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.to_yaml())}</pre>"

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        for name, coordinate in self.coordinates.items():   # type first, as a user writes it
            data["coordinates"][name] = {"type": coordinate.type, **data["coordinates"][name]}
        return data

    def resolved(self, base: Path) -> GameConfig:
        """Relative local paths made absolute against ``base`` (URIs such as hdfs:// stay as they are)."""
        def absolute(path: str) -> str:
            return path if "://" in path or Path(path).is_absolute() else str((base / path).resolve())

        coordinates = {name: c.model_copy(update={"scores": Inputs(train=absolute(c.scores.train),
                                                                   validation=absolute(c.scores.validation))})
                       if isinstance(c, ExternalCoordinate) else c for name, c in self.coordinates.items()}
        return self.model_copy(update={
            "coordinates": coordinates,
            "input": self.input.model_copy(update={"train": absolute(self.input.train),   # dates kept
                                                   "validation": absolute(self.input.validation)}),
            "output": absolute(self.output)})

    # ------------------------------------------------------------------ derived
    def shard(self, name: str) -> FeatureShard:
        return next(s for s in self.feature_shards if s.name == name)

    @property
    def entity_fields(self) -> list[str]:
        return sorted({c.entity_field for c in self.coordinates.values() if isinstance(c, RandomCoordinate)})

    @property
    def id_fields(self) -> list[str]:
        """Every id the scores must carry: random-effect entities and grouped evaluators' groups."""
        groups = {e.group for e in map(Evaluator.parse, self.evaluators) if e.group}
        return sorted(set(self.entity_fields) | groups)

    @property
    def needs_tensorflow(self) -> bool:
        """Whether a launcher task imports TensorFlow: a Keras coordinate, a GLM fixed effect that
        computes with it (the default), or several workers (their all-reduce is TensorFlow's)."""
        return any(isinstance(c, FixedKerasCoordinate) or (isinstance(c, FixedGlmCoordinate) and (
            c.compute != "scipy" or self.resources.launcher.workers > 1)) for c in self.coordinates.values())

    @property
    def fixed_effect(self) -> str | None:
        return next((n for n, c in self.coordinates.items() if c.type == "fixed"), None)

    def random_effects(self) -> dict[str, RandomCoordinate]:
        return {n: c for n, c in self.coordinates.items() if isinstance(c, RandomCoordinate)}

    @property
    def primary_metric(self) -> str:
        return self.evaluators[0]

    def higher_is_better(self) -> bool:
        return Evaluator.parse(self.primary_metric).higher_is_better

    def grid(self) -> list[dict[str, tuple[L2Weight, float]]]:
        """The regularization runs: one {coordinate: (l2, l1)} per combination (one run without
        lists), or per trial of ``search`` (its keys' values drawn, the others as configured)."""
        names = list(self.update_sequence)
        combos = itertools.product(*(self.coordinates[n].grid() for n in names))
        runs = [dict(zip(names, combo, strict=True)) for combo in combos]
        if self.search is None:
            return runs
        [base] = runs                   # the validator refused lists beside a search
        trials = []
        for point in self.search.points():
            trial = dict(base)
            for key, value in point.items():
                name, _, weight = key.rpartition(".")
                l2, l1 = trial[name]
                trial[name] = (value, l1) if weight == "l2" else (l2, value)
            trials.append(trial)
        return trials


def config_command(prog: str, argv: list[str] | None, action: Callable[[GameConfig], str],
                   out: TextIO | None = None, cwd: Path | None = None) -> int:
    """``python -m PROG CONFIG.yaml``: the flow's Python stages take the project's config and nothing
    else; a relative path is read from ``cwd`` (the project directory in a flow) when given."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {prog} CONFIG.yaml", file=out or sys.stderr)
        return 2
    path = (cwd or Path()) / args[0]
    return run_command(lambda: action(GameConfig.from_yaml(path)), out)
