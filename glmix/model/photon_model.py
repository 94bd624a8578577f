"""Photon ML's GAME model directories, in and out.

Photon ML writes::

    MODEL/model-metadata.json                 {"modelType": "LOGISTIC_REGRESSION", "optimizationConfigurations": ...}
    MODEL/fixed-effect/<name>/id-info         the feature shard id
    MODEL/random-effect/<name>/id-info        the entity field, then the feature shard id (one a line)
    MODEL/<kind>/<name>/coefficients/*.avro   BayesianLinearModelAvro, with or without variances

glmix publishes the same coefficient layout (glmix.model.game_model) with its own metadata, and
also writes the ``id-info`` files and ``modelType``, so Photon ML loads a glmix model as it is. :func:`import_photon_model` turns a Photon directory into a glmix model for
scoring, warm start and incremental priors: a shard named in ``id-info`` takes its bags from the
GAME config's ``feature_shards``, and coefficient files are rewritten with a schema current Avro
readers accept (glmix.io.avro.with_valid_defaults).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from glmix.errors import DataError
from glmix.io.avro import with_valid_defaults
from glmix.io.storage import join, publish_atomically, storage_for
from glmix.model.game_model import (
    ID_INFO,
    KIND_DIR,
    METADATA,
    PHOTON_TASKS,
    CoordinateModel,
    ModelKind,
    id_info,
    photon_model_type,
)
from glmix.settings import SHARD_META, FeatureShard, Task

_MODEL_TYPE = re.compile(r'"modelType"\s*:\s*"(.+?)"')   # how Photon ML reads its metadata


def read_photon_task(source: str) -> Task:
    path = join(source, METADATA)
    storage = storage_for(path)
    if not storage.exists(path):
        raise DataError(f"not a Photon ML model directory (no {METADATA})", path=source)
    match = _MODEL_TYPE.search(storage.read_bytes(path).decode("utf-8", "replace"))
    if match is None or match.group(1) not in PHOTON_TASKS:
        found = match.group(1) if match else "none"
        raise DataError(f"modelType {found}: glmix reads {', '.join(PHOTON_TASKS)}", path=path, field="modelType")
    return PHOTON_TASKS[match.group(1)]


def _coordinates(source: str) -> list[tuple[ModelKind, str, str]]:
    """(kind, name, directory) of every coordinate of a Photon model."""
    storage = storage_for(source)
    found: list[tuple[ModelKind, str, str]] = []
    for kind in ("fixed", "random"):
        root = join(source, KIND_DIR[kind])
        if storage.exists(root):
            found += [(kind, e.name, e.uri) for e in storage.list(root) if e.is_dir and not e.name.startswith((".", "_"))]
    if not found:
        raise DataError("no fixed-effect/ or random-effect/ coordinates", path=source)
    return found


def _id_info(kind: ModelKind, directory: str) -> tuple[str | None, str]:
    """(entity field, feature shard id) from a coordinate's id-info."""
    path = join(directory, ID_INFO)
    storage = storage_for(path)
    if not storage.exists(path):
        raise DataError(f"no {ID_INFO} (Photon ML writes the coordinate's feature shard there)", path=directory)
    lines = [line.strip() for line in storage.read_bytes(path).decode().splitlines() if line.strip()]
    expected = 2 if kind == "random" else 1
    if len(lines) != expected:
        form = "the entity field, then the feature shard id" if kind == "random" else "the feature shard id"
        raise DataError(f"expected {expected} line(s): {form}; found {len(lines)}", path=path)
    return (lines[0] if kind == "random" else None), lines[-1]


def import_photon_model(source: str, target: str, shards: Sequence[FeatureShard]) -> list[CoordinateModel]:
    """Publish the Photon ML model at ``source`` as a glmix model at ``target`` (atomically)."""
    task = read_photon_task(source)
    by_name = {s.name: s for s in shards}
    planned = []
    for kind, name, directory in _coordinates(source):
        entity_field, shard_id = _id_info(kind, directory)
        if shard_id not in by_name:
            raise DataError(f"coordinate {name} uses feature shard {shard_id!r}; the config defines "
                            f"{', '.join(sorted(by_name)) or 'none'}", path=join(directory, ID_INFO))
        planned.append((kind, name, directory, entity_field, by_name[shard_id]))
    models = []
    with publish_atomically(target) as tmp:
        storage = storage_for(tmp)
        coordinates = {}
        for kind, name, directory, entity_field, shard in planned:
            out = join(tmp, KIND_DIR[kind], name)
            parts = storage_for(directory).data_files(join(directory, "coefficients"), suffix=".avro", skip_empty=True)
            for k, part in enumerate(parts):
                storage.write_bytes(join(out, "coefficients", f"part-{k:05d}.avro"),
                                    with_valid_defaults(storage_for(part).read_bytes(part)))
            storage.write_bytes(join(out, SHARD_META), json.dumps({"shard": shard.model_dump(mode="json")}).encode())
            storage.write_bytes(join(out, ID_INFO), id_info(kind, shard.name, entity_field).encode())
            coordinates[name] = {"type": kind, "shard": shard.model_dump(mode="json"),
                                 **({"entity_field": entity_field} if entity_field else {})}
            models.append(CoordinateModel(name, kind, join(target, KIND_DIR[kind], name), entity_field))
        storage.write_bytes(join(tmp, METADATA), json.dumps({
            "task": task, "modelType": photon_model_type(task), "imported_from": source,
            "coordinates": coordinates}, indent=2).encode())
    return models
