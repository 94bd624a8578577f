"""Reading and writing what glmix stores: the storage layer (local paths and HDFS, atomic
publishing), Avro and its schemas, Photon-style examples, LIBSVM, Parquet tables and score tables."""

from __future__ import annotations

from glmix.io.avro import read_avro_records, write_avro_file, write_avro_parts
from glmix.io.examples import ColumnNames, Example, ExampleReader, ReadStats
from glmix.io.libsvm import import_libsvm
from glmix.io.parquet import read_parquet
from glmix.io.schemas import parsed_schema, raw_schema, training_example_schema
from glmix.io.scores import offsets_for, read_offsets
from glmix.io.storage import (
    Storage,
    copy_tree,
    is_published,
    join,
    publish_atomically,
    qualified,
    storage_for,
    write_file_atomically,
)

__all__ = ["ColumnNames", "Example", "ExampleReader", "ReadStats", "Storage", "copy_tree", "import_libsvm",
           "is_published", "join", "offsets_for", "parsed_schema", "publish_atomically", "qualified", "raw_schema",
           "read_avro_records", "read_offsets", "read_parquet", "storage_for", "training_example_schema",
           "write_avro_file", "write_avro_parts", "write_file_atomically"]
