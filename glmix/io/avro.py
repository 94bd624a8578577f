"""Bulk Avro reading and writing with fastavro, through the storage layer.

Older Avro writers accepted a field default that does not match the field's type (Photon ML's
model files carry a ``null`` default on ``string`` fields); fastavro and Avro 1.9+ refuse such a
schema. :func:`with_valid_defaults` rewrites a container file's header without those defaults
(they only matter when a reader's schema adds a field, which glmix never does); the records are
untouched. Written by hand: no Avro library offers a lenient schema parser.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, cast

import fastavro
from fastavro.schema import SchemaParseException

from glmix.errors import DataError
from glmix.io.storage import join, storage_for


def records_of(reader: Any) -> Iterator[dict[str, Any]]:
    """A reader's records, typed as what a record file holds (fastavro types them as any Avro value)."""
    return cast(Iterator[dict[str, Any]], iter(reader))


def writer_schema(reader: Any) -> dict[str, Any]:
    return cast(dict[str, Any], reader.writer_schema)


def write_avro_file(uri: str, schema: dict[str, Any], records: Iterable[dict[str, Any]], codec: str = "deflate") -> int:
    """Write records to one Avro file; returns how many were written."""
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for record in records:
            count += 1
            yield record

    with storage_for(uri).open_write(uri) as stream:
        fastavro.writer(stream, schema, counted(), codec=codec)
    return count


def write_avro_parts(directory: str, schema: dict[str, Any], records: Iterable[dict[str, Any]],
                     rows_per_file: int = 500_000, codec: str = "deflate") -> list[str]:
    """Write records into part-NNNNN.avro files of at most rows_per_file rows each."""
    iterator = iter(records)
    paths: list[str] = []
    while True:
        chunk = list(islice(iterator, rows_per_file))
        if not chunk and paths:
            break
        path = join(directory, f"part-{len(paths):05d}.avro")
        write_avro_file(path, schema, chunk, codec)
        paths.append(path)
        if len(chunk) < rows_per_file:
            break
    return paths


MAGIC = b"Obj\x01"
_METADATA = {"type": "map", "values": "bytes"}
_PRIMITIVE: dict[str, type | tuple[type, ...]] = {"null": type(None), "boolean": bool, "int": int, "long": int, "float": (int, float),
              "double": (int, float), "bytes": str, "string": str}


def _default_fits(field_type: Any, default: Any) -> bool:
    """Whether a default suits its field (a union's default suits its first branch); types this
    cannot judge (named types, arrays, maps) are left as they are."""
    first = field_type[0] if isinstance(field_type, list) else field_type
    if isinstance(first, str) and first in _PRIMITIVE:
        return isinstance(default, _PRIMITIVE[first]) and not (first != "boolean" and isinstance(default, bool))
    return default is not None or (isinstance(first, dict) and first.get("type") == "null")


def _drop_invalid_defaults(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_drop_invalid_defaults(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    fixed = {k: _drop_invalid_defaults(v) for k, v in schema.items() if k != "fields"}
    if "fields" in schema:
        fixed["fields"] = [{k: v for k, v in field.items() if k != "default" or _default_fits(field["type"], v)}
                           | {"type": _drop_invalid_defaults(field["type"])} for field in schema["fields"]]
    return fixed


def with_header_schema(data: bytes, change: Callable[[Any], Any]) -> bytes:
    """An Avro container file's bytes with its header's schema replaced by ``change(schema)``; the
    sync marker and the blocks are kept as they were (the records must still match)."""
    stream = io.BytesIO(data)
    if stream.read(4) != MAGIC:
        raise DataError("not an Avro container file")
    metadata = cast(dict[str, bytes], fastavro.schemaless_reader(stream, _METADATA, None))
    schema = json.loads(metadata["avro.schema"])
    changed = change(schema)
    if changed == schema:
        return data
    out = io.BytesIO()
    out.write(MAGIC)
    fastavro.schemaless_writer(out, _METADATA, {**metadata, "avro.schema": json.dumps(changed).encode()})
    out.write(stream.read())
    return out.getvalue()


def with_valid_defaults(data: bytes) -> bytes:
    """An Avro container file's bytes, its header's schema cleared of defaults that do not fit."""
    return with_header_schema(data, _drop_invalid_defaults)


def read_avro_records(uri: str) -> Iterator[dict[str, Any]]:
    """All records of an Avro file or directory of part files (invalid schema defaults dropped,
    see :func:`with_valid_defaults`); corrupt data names the file."""
    storage = storage_for(uri)
    for path in storage.data_files(uri, suffix=".avro", skip_empty=True):
        with storage.open_read(path) as stream:
            count = 0
            try:
                try:
                    reader = fastavro.reader(stream)
                except SchemaParseException:   # a file that needs its defaults dropped is read whole
                    reader = fastavro.reader(io.BytesIO(with_valid_defaults(storage.read_bytes(path))))
                for record in records_of(reader):
                    yield record
                    count += 1
            except Exception as exc:
                raise DataError(f"corrupt or truncated Avro data ({type(exc).__name__}: {exc})",
                                path=path, record=count) from exc
