"""The arguments of every Spark job (jobs/*.py): the contract between the flow builder, which
writes them into a stage's command (``to_argv``), and the job, which reads them (``from_argv``).
See glmix.stage_args for how fields become flags."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from glmix.errors import ConfigError
from glmix.glm.metrics import Evaluator
from glmix.io.dated import DatedDays, DateRange, parse_run_date
from glmix.io.examples import ColumnNames
from glmix.settings import BadRecordPolicy, DataGateSettings, FeatureShard, Task
from glmix.stage_args import Location, NamedLocation, StageArgs
from glmix.train.random_effect import RandomEffectConfig


class SparkJobArgs(StageArgs):
    master: str | None = Field(None, description="Spark master when run with plain python (spark-submit sets its own)")


class DatedArgs(SparkJobArgs):
    """Jobs whose input may be dated (ROOT/daily/YYYY/MM/DD): which days, as of which run date."""

    dates: DateRange | None = Field(None, description="days to read, as JSON: start and end, or last_days; "
                                                      "allow_gaps")
    run_date: str | None = Field(None, description="YYYY-MM-DD, the day last_days counts back from (a flow "
                                                   "passes ${glmix.run.date})")

    def dated(self) -> DatedDays | None:
        return DatedDays(self.dates, parse_run_date(self.run_date)) if self.dates else None


class ReadingArgs(DatedArgs):
    """Jobs that read TrainingExample data: its column names and what to do with bad records."""

    input: Location
    columns: ColumnNames = Field(ColumnNames(), description="input column names as JSON (response, uid, weight, "
                                                            "offset, metadata_map), as Photon's --input-column-names")
    bad_records: BadRecordPolicy = "fail"


class IndexArgs(ReadingArgs):
    PROG: ClassVar[str] = "index_features"

    output: Location = Field(description="the shard's directory; with --shards, their parent")
    shards: list[FeatureShard] | None = Field(None, description="every shard, as JSON (name, bags, intercept, "
                                                                "min_count, whitelist)")
    shard_name: str | None = None
    bags: list[str] | None = None
    min_count: int = Field(1, ge=1)
    whitelist: Location | None = None
    intercept: bool = True


class PrepareArgs(ReadingArgs):
    PROG: ClassVar[str] = "prepare_fixed_effect"

    index: Location = Field(description="output directory of index_features for the shard")
    output: Location
    files: int = Field(1, ge=1, description="number of balanced output files")
    task: Task | None = Field(None, description="validates labels for the task")


class PartitionArgs(ReadingArgs):
    PROG: ClassVar[str] = "partition_random_effect"

    entity_field: str = Field(description="e.g. userId (top-level field or metadataMap key)")
    index: Location = Field(description="output directory of index_features for the shard")
    output: Location
    offsets: Location | None = Field(None, description="scores of the other coordinates (uid, score), or ScoringResult")
    offsets_exclude: str | None = Field(None, description="with ScoringResult offsets: the coordinate being "
                                                          "trained, left out of the sum")
    lower_bound: int = Field(1, ge=1, description="active-data lower bound (rows per entity)")
    upper_bound: int | None = Field(None, ge=1, description="active-data upper bound (down-sample above it)")
    partitions: int = Field(4, ge=1)
    seed: int = 0
    task: Task | None = None


class TrainRandomEffectArgs(SparkJobArgs, RandomEffectConfig):
    PROG: ClassVar[str] = "train_random_effect"

    data: Location = Field(description="output of jobs/partition_random_effect")
    index: Location = Field(description="the random-effect shard's index")
    output: Location
    model_id: str = "random-effect"
    offsets: list[Location] | None = Field(None, description="scores of the other coordinates, summed: uid/score "
                                                        "sets, or ScoringResult Avro")
    offsets_exclude: str | None = Field(None, description="this coordinate's name in the offsets")

    def config(self) -> RandomEffectConfig:
        return RandomEffectConfig.model_validate(self.model_dump(include=set(RandomEffectConfig.model_fields)))


EVALUATORS_HELP = "e.g. AUC LOGISTIC_LOSS AUC:userId (or comma-separated)"


class EvaluatorsArgs(StageArgs):
    """What an evaluation computes and records: the evaluate job's, and the score job's when it
    evaluates what it scored (a flow step's one node for both)."""

    evaluators: list[str] = Field([], description=EVALUATORS_HELP)
    coordinate: str | None = Field(None, description="the coordinate last updated (recorded with the metrics)")
    pass_index: int | None = Field(None, description="the coordinate-descent pass (recorded)")

    @field_validator("evaluators")
    @classmethod
    def _split(cls, evaluators: list[str]) -> list[str]:
        """Comma-separated or not; each known, so a bad name fails before any scoring."""
        names = [e for value in evaluators for e in value.split(",") if e]
        for name in names:
            Evaluator.parse(name)
        return names


class ScoreArgs(DatedArgs, EvaluatorsArgs):
    PROG: ClassVar[str] = "score"

    data: list[NamedLocation] = Field(description="datasets to score, NAME=URI each; written to OUTPUT/NAME")
    output: Location
    model: Location | None = Field(None, description="a published GAME model directory (model-metadata.json)")
    model_pointer: Location | None = Field(None, description="a JSON file whose \"model\" names the GAME model "
                                           "directory, read when the job starts (a model chosen at run time)")
    scores: list[NamedLocation] = Field([], description="NAME=DIR each: a coordinate given by its scores, DIR/scores/<dataset>/"
                                              " (uid, score), e.g. a Keras fixed effect or an external model")
    fixed_effect: list[NamedLocation] = Field([], description="NAME=DIR each")
    random_effect: list[NamedLocation] = Field([], description="NAME=ENTITY_FIELD=DIR each")
    model_id: str = "game"
    columns: ColumnNames = Field(ColumnNames(), description="input column names as JSON, as for the other jobs")
    bad_records: BadRecordPolicy = "fail"
    files: int = Field(2, ge=1, description="output files per dataset")
    id_fields: list[str] = Field([], description="more entity ids to copy into metadataMap (for grouped metrics)")
    metrics: Location | None = Field(None, description="with --evaluators: where the metrics of the (one) scored "
                                     "dataset go, as jobs/evaluate writes them")

    @field_validator("data")
    @classmethod
    def _named(cls, data: list[str]) -> list[str]:
        for value in data:
            name, sep, uri = value.partition("=")
            if not sep or not name or not uri:
                raise ValueError(f"{value!r}: expected NAME=URI")
        return data

    @model_validator(mode="after")
    def _evaluated(self) -> Self:
        if (self.metrics is None) != (not self.evaluators):
            raise ValueError("--metrics and --evaluators go together")
        if self.metrics is not None and len(self.data) != 1:
            raise ValueError("--metrics evaluates one scored dataset: give one --data")
        return self

    def datasets(self) -> dict[str, str]:
        return dict(value.split("=", 1) for value in self.data)


class EvaluateArgs(SparkJobArgs, EvaluatorsArgs):
    PROG: ClassVar[str] = "evaluate"

    scores: Location = Field(description="ScoringResult Avro (jobs/score output for one dataset)")
    output: Location
    evaluators: list[str] = Field(["AUC"], description=EVALUATORS_HELP)
    dataset: str | None = Field(None, description="a name for the data (default: the scores path)")


class DataGateArgs(ReadingArgs):
    PROG: ClassVar[str] = "data_gate"

    output: Location = Field(description="the gate's directory: stats.json, data-gate.json, index.html")
    bags: list[str] = Field(description="the feature bags the flow's shards read")
    entity_fields: list[str] = Field([], description="the random effects' entity ids (counted when missing)")
    task: Task | None = Field(None, description="validates labels for the task (bad rows are counted)")
    registry: Location = Field(description="the model registry whose production version is the reference")
    model: str = Field(description="the model's name in the registry")
    gate: DataGateSettings = Field(DataGateSettings(), description="thresholds and action, as JSON (a config's "
                                                                   "data_gate section)")


JOBS: dict[str, type[SparkJobArgs]] = {args.PROG: args for args in (
    IndexArgs, PrepareArgs, PartitionArgs, TrainRandomEffectArgs, ScoreArgs, EvaluateArgs, DataGateArgs)}
AND, THEN = "--and", "--then"


class TogetherArgs(SparkJobArgs):
    """Several jobs for one Spark application (jobs/together.py): ``JOB ARGS [--and JOB ARGS]... [--then
    JOB ARGS...]``. Groups (split by ``--then``) run one after the other, the jobs of a group (split by
    ``--and``) side by side; each job's arguments are its own command line."""

    PROG: ClassVar[str] = "together"

    groups: list[list[SerializeAsAny[SparkJobArgs]]] = Field(description="the jobs, group by group")

    @model_validator(mode="after")
    def _jobs(self) -> Self:
        if not self.groups or not all(self.groups):
            raise ValueError("no job given (JOB ARGS [--and JOB ARGS]... [--then JOB ARGS...])")
        for job in (job for group in self.groups for job in group):
            if job.master is not None:
                raise ValueError(f"{job.PROG}: --master is the application's: give it before the first job")
        return self

    def to_argv(self) -> list[str]:
        words = ["--master", self.master] if self.master else []
        for g, group in enumerate(self.groups):
            for j, job in enumerate(group):
                words += ([AND] if j else [THEN] if g else []) + [job.PROG, *job.to_argv()]
        return words

    @classmethod
    def from_argv(cls, argv: Sequence[str] | None = None, description: str | None = None) -> Self:
        words = list(sys.argv[1:] if argv is None else argv)
        if not words or words[0] in ("-h", "--help"):
            print(description or cls.__doc__)
            raise SystemExit(0 if words else 2)
        master = None
        if words[0] == "--master" and len(words) > 1:
            master, words = words[1], words[2:]
        groups = [[_job(part) for part in _split(group, AND)] for group in _split(words, THEN)]
        return cls.parse({"groups": groups, "master": master}, where=cls.PROG)

    def resolved(self, base: Path) -> Self:
        return self.model_copy(update={"groups": [[job.resolved(base) for job in group] for group in self.groups]})


def _split(words: list[str], separator: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word == separator:
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def _job(words: list[str]) -> SparkJobArgs:
    """One job of a together command: its name (a jobs/ script), then its arguments."""
    if not words:
        raise ConfigError(f"together: a job is missing around {AND} or {THEN}")
    name, *argv = words
    if name not in JOBS:
        raise ConfigError(f"together: unknown job {name!r}; the jobs: {', '.join(sorted(JOBS))}")
    return JOBS[name].from_argv(argv)
