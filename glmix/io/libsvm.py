"""LIBSVM text -> TrainingExample Avro (feature index i becomes name 'i', term '')."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glmix.errors import DataError
from glmix.io.avro import write_avro_parts
from glmix.io.schemas import parsed_schema
from glmix.io.storage import publish_atomically


def parse_libsvm(path: str, binary_labels: bool = True) -> Iterator[dict[str, Any]]:
    """TrainingExample records from a LIBSVM file; ``binary_labels`` maps -1/+1 to 0/1.

    Errors name the file, line and token: a bad label, a token that is not index:value, or a
    non-finite value.
    """
    stem = Path(path).name
    with open(path) as lines:
        for line_no, line in enumerate(lines, start=1):
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            try:
                label = float(tokens[0])
            except ValueError:
                raise DataError(f"line {line_no}: label {tokens[0]!r} is not a number", path=path,
                                field="label") from None
            if binary_labels:
                if label not in (-1.0, 0.0, 1.0):
                    raise DataError(f"line {line_no}: label {tokens[0]!r} is not -1, 0 or +1", path=path,
                                    field="label")
                label = 1.0 if label > 0 else 0.0
            features = []
            for token in tokens[1:]:
                index, sep, value = token.partition(":")
                try:
                    number = float(value)
                    if not sep or not index.isdigit() or not math.isfinite(number):
                        raise ValueError
                except ValueError:
                    raise DataError(f"line {line_no}: feature {token!r} is not index:value", path=path,
                                    field="features") from None
                features.append({"name": index, "term": "", "value": number})
            yield {"uid": f"{stem}-{line_no}", "label": label, "features": features, "metadataMap": None,
                   "weight": None, "offset": None}


def import_libsvm(path: str, output: str, binary_labels: bool = True, rows_per_file: int = 500_000) -> int:
    """Convert a LIBSVM file to an Avro directory, published atomically; returns the row count."""
    rows = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal rows
        for record in parse_libsvm(path, binary_labels):
            rows += 1
            yield record

    with publish_atomically(output) as tmp:
        write_avro_parts(tmp, parsed_schema("TrainingExample"), counted(), rows_per_file)
    return rows
