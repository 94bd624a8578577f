"""Reading training examples from Avro, accepting the variations real Photon ML data has.

The response may be called ``label`` or ``response`` (or any configured name); label, uid and entity
ids may be unions of int/long/float/double/boolean/string; entity ids may be top-level fields or
keys of ``metadataMap``; a record may repeat a (name, term) pair within a bag (the values are summed
and the repeats counted, see :func:`merge_duplicates`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fastavro
from pydantic import BaseModel, ConfigDict

from glmix.errors import DataError
from glmix.io.avro import records_of, writer_schema
from glmix.io.storage import storage_for

RESPONSE_CANDIDATES = ("label", "response")

Feature = tuple[str, str, float]


class ColumnNames(BaseModel):
    """Input column names, as Photon ML's --input-column-names. ``response=None`` accepts label or
    response; ``uid=None`` ignores any uid column and numbers the rows (see glmix.spark.input)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    response: str | None = None
    uid: str | None = "uid"
    weight: str = "weight"
    offset: str = "offset"
    metadata_map: str = "metadataMap"


@dataclass
class Example:
    """One normalized example: numeric label, default weight 1 and offset 0, string ids."""

    uid: str | None
    label: float
    weight: float
    offset: float
    bags: dict[str, list[Feature]]
    ids: dict[str, str]
    duplicates: int = 0


@dataclass
class ReadStats:
    rows: int = 0
    duplicate_features: int = 0
    files: list[str] = field(default_factory=list)


def to_float(value: Any) -> float:
    """Coerce a Photon-style union value (number, boolean or numeric string) to float."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return 1.0 if lowered == "true" else 0.0
        return float(lowered)
    raise TypeError(f"cannot use {type(value).__name__} as a number")


def to_id(value: Any) -> str:
    """Entity ids and uids are compared as strings whatever their Avro type (7 and '7' are one id)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def merge_duplicates(features: list[Feature]) -> tuple[list[Feature], int]:
    """Sum repeated (name, term) pairs; return the merged bag and how many repeats were merged."""
    merged: dict[tuple[str, str], float] = {}
    for name, term, value in features:
        key = (name, term)
        merged[key] = merged.get(key, 0.0) + value
    repeats = len(features) - len(merged)
    if repeats == 0:
        return features, 0
    return [(n, t, v) for (n, t), v in merged.items()], repeats


class ExampleReader:
    """Streams normalized Examples from Avro files (a file or a directory of part files)."""

    def __init__(self, columns: ColumnNames | None = None, bags: tuple[str, ...] = ("features",),
                 entity_fields: tuple[str, ...] = ()) -> None:
        self.columns = columns or ColumnNames()
        self.bags = bags
        self.entity_fields = entity_fields

    def read(self, uri: str, stats: ReadStats | None = None) -> Iterator[Example]:
        storage = storage_for(uri)
        for path in storage.data_files(uri, suffix=".avro", skip_empty=True):
            if stats is not None:
                stats.files.append(path)
            yield from self._read_file(path, stats)

    def _response_field(self, path: str, field_names: set[str]) -> str:
        wanted = (self.columns.response,) if self.columns.response else RESPONSE_CANDIDATES
        for name in wanted:
            if name in field_names:
                return name
        raise DataError(f"no usable label field: expected one of {', '.join(wanted)}; "
                        f"schema has {', '.join(sorted(field_names))}", path=path)

    def _read_file(self, path: str, stats: ReadStats | None) -> Iterator[Example]:
        with storage_for(path).open_read(path) as stream:
            try:
                reader = fastavro.reader(stream)
            except Exception as exc:  # fastavro raises several types for a bad header
                raise DataError(f"not a readable Avro file ({exc})", path=path) from exc
            field_names = {f["name"] for f in writer_schema(reader).get("fields", [])}
            response = self._response_field(path, field_names)
            missing = [b for b in self.bags if b not in field_names]
            if missing:
                raise DataError(f"feature bag(s) {', '.join(missing)} not in the schema", path=path)
            index = 0
            try:
                for index, record in enumerate(records_of(reader)):
                    example = self._normalize(record, response, path, index)
                    if stats is not None:
                        stats.rows += 1
                        stats.duplicate_features += example.duplicates
                    yield example
            except DataError:
                raise
            except Exception as exc:  # truncated or corrupt blocks surface as assorted errors
                raise DataError(f"corrupt or truncated Avro data after {index} records ({type(exc).__name__}: {exc})",
                                path=path, record=index) from exc

    def _normalize(self, record: dict[str, Any], response: str, path: str, index: int) -> Example:
        c = self.columns

        def number(name: str, value: Any, default: float | None) -> float:
            if value is None:
                if default is None:
                    raise DataError("is null", path=path, record=index, field=name)
                return default
            try:
                result = to_float(value)
            except (TypeError, ValueError):
                raise DataError(f"not a number: {value!r}", path=path, record=index, field=name) from None
            if not math.isfinite(result):
                raise DataError(f"not finite: {value!r}", path=path, record=index, field=name)
            return result

        bags: dict[str, list[Feature]] = {}
        duplicates = 0
        for bag in self.bags:
            features = [(f["name"], f.get("term") or "", f["value"]) for f in record.get(bag) or ()]
            bags[bag], repeats = merge_duplicates(features)
            duplicates += repeats
        metadata = record.get(c.metadata_map) or {}
        ids: dict[str, str] = {}
        for name in self.entity_fields:
            value = record.get(name)
            if value is None:
                value = metadata.get(name)
            if value is None:
                raise DataError("entity id missing (neither a top-level field nor a metadataMap key)",
                                path=path, record=index, field=name)
            ids[name] = to_id(value)
        uid = record.get(c.uid) if c.uid is not None else None
        return Example(uid=None if uid is None else to_id(uid),
                       label=number(response, record.get(response), None),
                       weight=number(c.weight, record.get(c.weight), 1.0),
                       offset=number(c.offset, record.get(c.offset), 0.0),
                       bags=bags, ids=ids, duplicates=duplicates)
