"""Reading TrainingExample Avro: glmix's fastavro reader vs the Apache `avro` package, same file."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import avro.datafile
import avro.io

from bench.report import print_table
from bench.sizes import size
from glmix.data.synthetic import generate, generic_spec
from glmix.io.examples import ExampleReader

ROWS = size(50_000, 2_000)


def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = generic_spec(rows=ROWS, users=1000, items=100, context_dimension=10_000, context_nnz=20)
        spec = spec.model_copy(update={"validation_fraction": 0.0, "rows_per_file": ROWS})
        generate(spec, f"{tmp}/data")
        path = Path(tmp, "data", "train", "part-00000.avro")
        started = time.perf_counter()
        ours = sum(1 for _ in ExampleReader(bags=("features", "userFeatures", "itemFeatures"),
                                            entity_fields=("userId", "itemId")).read(str(path)))
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        with open(path, "rb") as stream:
            peer = sum(1 for _ in avro.datafile.DataFileReader(stream, avro.io.DatumReader()))
        peer_s = time.perf_counter() - started
    assert ours == peer == ROWS
    print_table(f"Avro read, {ROWS:,} rows x 30 non-zeros", ["reader", "seconds", "rows/s", "speed-up vs avro"],
                [["glmix ExampleReader (fastavro, normalized)", ours_s, ROWS / ours_s, peer_s / ours_s],
                 ["Apache avro DataFileReader (raw dicts)", peer_s, ROWS / peer_s, 1.0]])
