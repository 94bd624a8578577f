"""A GAME model on storage: which coordinate models it is made of, and its directory layout.

The published layout (what ``best/`` holds, and what Photon ML users recognise)::

    MODEL/
      model-metadata.json                       task, coordinates (type, shard, entity field), pass, metrics
      fixed-effect/<name>/coefficients/*.avro   Model Avro, one record (modelId = coordinate name)
      fixed-effect/<name>/_shard.json           the feature shard (bags, intercept) it was trained on
      random-effect/<name>/coefficients/*.avro  Model Avro, one record per entity (modelId = entity id)
      random-effect/<name>/_shard.json
      <kind>/<name>/_report.json                the trainer's report (rows, regularization, dispersion)
      <kind>/<name>/id-info                     the shard (a random effect: entity field, then shard), and
                                                "modelType" in the metadata: what Photon ML reads

During coordinate descent a model is the latest trainer output of each coordinate; a trainer's
output directory has the same ``_shard.json`` with its coefficients under ``model/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from glmix.errors import ConfigError
from glmix.io.storage import SUCCESS_MARKER, copy_tree, join, publish_atomically, storage_for
from glmix.settings import SHARD_META, FeatureShard, Task

METADATA = "model-metadata.json"
TRAINING_REPORT = "_report.json"   # the trainer's: rows, entities, regularization, dispersion
KIND_DIR = {"fixed": "fixed-effect", "random": "random-effect", "scores": "fixed-effect"}
ModelKind = Literal["fixed", "random", "scores"]
FLAG = {"fixed": "fixed-effect", "random": "random-effect", "scores": "scores"}
ID_INFO = "id-info"
PHOTON_TASKS: dict[str, Task] = {"LOGISTIC_REGRESSION": "logistic", "LINEAR_REGRESSION": "linear",
                                 "POISSON_REGRESSION": "poisson"}


def photon_model_type(task: Task) -> str:
    """Photon ML's name of a task (its metadata's ``modelType``)."""
    return next(name for name, t in PHOTON_TASKS.items() if t == task)


def id_info(kind: ModelKind, shard: str, entity_field: str | None) -> str:
    """A coordinate's ``id-info`` file, as Photon ML writes and reads it."""
    return f"{entity_field}\n{shard}\n" if kind == "random" else f"{shard}\n"


@dataclass(frozen=True)
class CoordinateModel:
    """One coordinate's model: where its coefficients are and which features and ids it reads.

    ``scores``: a model glmix cannot apply itself (a Keras network, or scores made elsewhere); its
    directory holds ``scores/<dataset>/`` (uid, score) for the datasets of the flow."""

    name: str
    type: ModelKind
    directory: str
    entity_field: str | None = None

    @property
    def coefficients(self) -> str:
        """A trainer output keeps them under model/, a published GAME model under coefficients/."""
        published = join(self.directory, "coefficients")
        return published if storage_for(published).exists(published) else join(self.directory, "model")

    def shard(self) -> FeatureShard:
        meta = join(self.directory, SHARD_META)
        storage = storage_for(meta)
        if not storage.exists(meta):
            raise ConfigError(f"{self.directory}: not a coordinate model (no {SHARD_META})")
        return FeatureShard.model_validate(json.loads(storage.read_bytes(meta))["shard"])

    def scores(self, dataset: str) -> str:
        return join(self.directory, "scores", dataset)

    @classmethod
    def from_flag(cls, kind: ModelKind, value: str) -> CoordinateModel:
        """``NAME=DIR`` (fixed, scores) or ``NAME=ENTITY_FIELD=DIR`` (random), as the scoring job's flags."""
        parts = value.split("=", 2 if kind == "random" else 1)
        if len(parts) != (3 if kind == "random" else 2) or not all(parts):
            form = "NAME=ENTITY_FIELD=DIR" if kind == "random" else "NAME=DIR"
            raise ConfigError(f"--{FLAG[kind]} {value!r}: expected {form}")
        if kind == "random":
            return cls(parts[0], kind, parts[2], parts[1])
        return cls(parts[0], kind, parts[1])

    def flag_value(self) -> str:
        """``NAME=DIR`` or ``NAME=ENTITY_FIELD=DIR``: the value of the scoring job's flag of its kind."""
        middle = f"{self.entity_field}=" if self.type == "random" else ""
        return f"{self.name}={middle}{self.directory}"

    def to_flag(self) -> str:
        return f"--{FLAG[self.type]}={self.flag_value()}"


def read_game_model(directory: str) -> tuple[list[CoordinateModel], dict[str, Any]]:
    """The coordinates of a published GAME model directory, and its metadata."""
    storage = storage_for(directory)
    path = join(directory, METADATA)
    if not storage.exists(path):
        raise ConfigError(f"{directory}: not a GAME model (no {METADATA})")
    metadata = json.loads(storage.read_bytes(path))
    models = [CoordinateModel(name, c["type"], join(directory, KIND_DIR[c["type"]], name), c.get("entity_field"))
              for name, c in metadata["coordinates"].items()]
    return models, metadata


def publish_game_model(output: str, models: list[CoordinateModel], metadata: dict[str, Any]) -> None:
    """Copy coordinate models into the standard layout, atomically (the old model stays until it is done)."""
    with publish_atomically(output) as tmp:
        coordinates: dict[str, dict[str, Any]] = {}
        for model in models:
            target = join(tmp, KIND_DIR[model.type], model.name)
            if model.type == "scores":
                for part in ("scores", "saved_model"):
                    if storage_for(model.directory).exists(join(model.directory, part)):
                        copy_tree(join(model.directory, part), join(target, part))
                coordinates[model.name] = {"type": model.type}
                continue
            copy_tree(model.coefficients, join(target, "coefficients"))
            storage_for(target).delete(join(target, "coefficients", SUCCESS_MARKER))
            copy_tree(join(model.directory, SHARD_META), join(target, SHARD_META))
            if storage_for(model.directory).exists(join(model.directory, TRAINING_REPORT)):   # what the summary reads
                copy_tree(join(model.directory, TRAINING_REPORT), join(target, TRAINING_REPORT))
            shard = model.shard()
            storage_for(target).write_bytes(join(target, ID_INFO),
                                            id_info(model.type, shard.name, model.entity_field).encode())
            coordinates[model.name] = {"type": model.type, "shard": shard.model_dump(mode="json"),
                                       **({"entity_field": model.entity_field} if model.entity_field else {})}
        photon = {"modelType": photon_model_type(metadata["task"])} if metadata.get("task") in PHOTON_TASKS.values() \
            else {}
        storage_for(tmp).write_bytes(join(tmp, METADATA), json.dumps(
            {**metadata, **photon, "coordinates": coordinates}, indent=2, default=str).encode())
