"""Bulk Avro reading and writing with fastavro, through the storage layer."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, cast

import fastavro

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


def read_avro_records(uri: str) -> Iterator[dict[str, Any]]:
    """All records of an Avro file or directory of part files; corrupt data names the file."""
    storage = storage_for(uri)
    for path in storage.data_files(uri, suffix=".avro"):
        with storage.open_read(path) as stream:
            count = 0
            try:
                for record in records_of(fastavro.reader(stream)):
                    yield record
                    count += 1
            except Exception as exc:
                raise DataError(f"corrupt or truncated Avro data ({type(exc).__name__}: {exc})",
                                path=path, record=count) from exc
