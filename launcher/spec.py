"""The launcher spec: a typed, validated description of a distributed TensorFlow job.

    name: glmix-fixed-effect
    queue: default
    max_attempts: 2
    timeouts: {allocation: 300, registration: 120, job: 3600}
    tasks:
      chief:  {instances: 1, memory: 1024, command: "python -m glmix.train.fixed_effect ..."}
      worker: {instances: 2, memory: 1024, command: "python -m glmix.train.fixed_effect ..."}

Every problem is reported before anything is submitted, naming the key (``tasks.worker.memory:
must be at least 256 MB``). ``--set tasks.worker.instances=3`` style overrides are applied to the
raw document first, so they are validated like everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from glmix.errors import ConfigError
from glmix.settings import Settings

MIN_MEMORY_MB = 256
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
UNTRACKED_BY_DEFAULT = {"ps", "evaluator", "tensorboard"}
TENSORBOARD_TASK = "tensorboard"


class TaskSpec(Settings):
    instances: int = Field(1, ge=1)
    memory: int = Field(1024, description="MB per container")
    vcores: int = Field(1, ge=1)
    gpus: int = Field(0, ge=0)
    command: str = Field(min_length=1)
    env: dict[str, str] = {}
    files: dict[str, str] = Field({}, description="name in the container -> local path or hdfs:// URI")
    tracked: bool | None = Field(None, description="whether the job's outcome waits for this task type")

    @field_validator("memory")
    @classmethod
    def _enough_memory(cls, memory: int) -> int:
        if memory < MIN_MEMORY_MB:
            raise ValueError(f"must be at least {MIN_MEMORY_MB} MB")
        return memory

    @field_validator("command")
    @classmethod
    def _not_blank(cls, command: str) -> str:
        if not command.strip():
            raise ValueError("must not be blank")
        return command

    @field_validator("env", "files")
    @classmethod
    def _plain_names(cls, values: dict[str, str]) -> dict[str, str]:
        import re

        for name in values:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
                raise ValueError(f"{name!r} is not a plain name")
        return values


class Timeouts(Settings):
    allocation: float = Field(300, gt=0, description="s until every container is allocated")
    registration: float = Field(120, gt=0, description="s a task waits at the barrier for the others")
    job: float = Field(24 * 3600, gt=0, description="s for the whole job")


class PythonEnv(Settings):
    """Where containers find Python: a path on every node, or a packed archive (venv-pack) to localize."""

    path: str | None = None
    archive: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PythonEnv:
        if bool(self.path) == bool(self.archive):
            raise ValueError("set exactly one of path or archive")
        return self


class Kerberos(Settings):
    principal: str
    keytab: str


class JobSpec(Settings):
    name: str = Field(pattern=NAME_PATTERN)
    queue: str = Field("default", pattern=NAME_PATTERN)
    node_label: str | None = Field(None, pattern=NAME_PATTERN)
    tags: list[str] = []
    max_attempts: int = Field(1, ge=1)
    timeouts: Timeouts = Timeouts()
    python: PythonEnv | None = None
    code: str | None = Field(None, description="directory or archive shipped to every container as ./code")
    kerberos: Kerberos | None = None
    tensorboard_log_dir: str | None = Field(None, description="recorded in the job history for TensorBoard")
    tensorboard: bool = Field(False, description="add an untracked TensorBoard task over tensorboard_log_dir; "
                                                 "its address becomes a page of the application's tracking UI")
    tasks: dict[str, TaskSpec] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _tensorboard_task(cls, data: Any) -> Any:
        """``tensorboard: true`` expands to a TensorBoard task, which both backends run like any other."""
        if not isinstance(data, dict) or not data.get("tensorboard") or not isinstance(data.get("tasks"), dict):
            return data
        if not data.get("tensorboard_log_dir"):
            raise ValueError("tensorboard: true needs tensorboard_log_dir")
        command = (f"python -m tensorboard.main --logdir {data['tensorboard_log_dir']} "
                   "--host $GLMIX_TASK_HOST --port $GLMIX_TASK_PORT")
        task = {"instances": 1, "memory": 1024, "command": command, "tracked": False}
        return {**data, "tasks": {TENSORBOARD_TASK: task, **data["tasks"]}}

    @field_validator("tasks")
    @classmethod
    def _task_names(cls, tasks: dict[str, TaskSpec]) -> dict[str, TaskSpec]:
        import re

        for name in tasks:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(f"task type {name!r} must match {NAME_PATTERN}")
        if "chief" in tasks and tasks["chief"].instances != 1:
            raise ValueError("there is exactly one chief")
        return tasks

    def is_tracked(self, task_type: str) -> bool:
        tracked = self.tasks[task_type].tracked
        return tracked if tracked is not None else task_type not in UNTRACKED_BY_DEFAULT

    def instances(self) -> list[tuple[str, int]]:
        """Every (task type, index) of the job, in a stable order."""
        return [(t, i) for t, spec in sorted(self.tasks.items()) for i in range(spec.instances)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: Sequence[str] = ()) -> JobSpec:
        data = dict(data)
        for override in overrides:
            key, sep, value = override.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set {override!r}: expected key=value")
            _set_path(data, key.split("."), yaml.safe_load(value))
        return cls.parse(data)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Sequence[str] = ()) -> JobSpec:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read spec: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a spec is a mapping of keys")
        return cls.from_dict(data, overrides)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _set_path(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = data.get(key)
        if not isinstance(child, dict):
            child = {}
            data[key] = child
        data = child
    data[keys[-1]] = value
