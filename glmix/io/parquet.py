"""Parquet through the storage layer (local or HDFS), for the small tables the trainers and reports
read on the driver: feature index maps, score tables, partition sizes."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from glmix.io.storage import storage_for


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file or directory (all data files) through the storage layer."""
    storage = storage_for(uri)
    tables = []
    for path in storage.data_files(uri, suffix=".parquet"):
        with storage.open_read(path) as stream:
            tables.append(pq.read_table(io.BytesIO(stream.read()), columns=columns))
    return pa.concat_tables(tables) if tables else pa.table({})
