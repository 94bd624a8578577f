"""Avro schemas, loaded from the repo's avro_schemas/ directory (the single source of truth)."""

from __future__ import annotations

import copy
import json
import os
import zipfile
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro


def _schema_dir() -> Path | zipfile.Path:
    """``avro_schemas/`` next to the glmix package: in the source tree, or inside the code archive
    glmix was imported from in a container (glmix.deploy)."""
    if "GLMIX_SCHEMA_DIR" in os.environ:
        return Path(os.environ["GLMIX_SCHEMA_DIR"])
    root = Path(__file__).resolve().parents[2]
    return zipfile.Path(root, "avro_schemas/") if zipfile.is_zipfile(root) else root / "avro_schemas"


SCHEMA_DIR = _schema_dir()
NAMESPACE = "com.linkedin.photon.avro.generated"
FEATURE_TYPE = f"{NAMESPACE}.FeatureAvro"
INTERCEPT_NAME = "(INTERCEPT)"

SCHEMA_FILES = {
    "TrainingExample": "TrainingExample.avsc",
    "Model": "Model.avsc",
    "ScoringResult": "ScoringResult.avsc",
    "FeatureSummary": "FeatureSummary.avsc",
    "EvaluationMetrics": "EvaluationMetrics.avsc",
}


@cache
def _raw(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / SCHEMA_FILES[name]).read_text())
    return schema


def raw_schema(name: str) -> dict[str, Any]:
    """The JSON of one schema in avro_schemas/ (a copy, safe to modify)."""
    return copy.deepcopy(_raw(name))


@cache
def parsed_schema(name: str) -> dict[str, Any]:
    """A fastavro-parsed schema, ready for fastavro.writer."""
    return cast(dict[str, Any], fastavro.parse_schema(raw_schema(name)))


def training_example_schema(extra_bags: tuple[str, ...] = (), entity_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """TrainingExample plus extra feature bags and string entity-id fields, as datasets carry them."""
    schema = raw_schema("TrainingExample")
    names = {f["name"] for f in schema["fields"]}
    for bag in extra_bags:
        if bag in names:
            continue
        schema["fields"].append({"name": bag, "type": {"type": "array", "items": FEATURE_TYPE}, "default": []})
    for field in entity_fields:
        if field not in names:
            schema["fields"].append({"name": field, "type": ["null", "string"], "default": None})
    return cast(dict[str, Any], fastavro.parse_schema(schema))
