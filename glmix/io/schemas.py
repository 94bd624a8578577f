"""Avro schemas, loaded from the repo's avro_schemas/ directory (the single source of truth)."""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro

SCHEMA_DIR = Path(os.environ.get("GLMIX_SCHEMA_DIR", Path(__file__).resolve().parents[2] / "avro_schemas"))
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
    with open(SCHEMA_DIR / SCHEMA_FILES[name]) as f:
        return json.load(f)


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
