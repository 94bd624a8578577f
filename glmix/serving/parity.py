"""The parity check: does the online scorer give every row the score the Spark scoring job gave it?

Any team can run it on its own model and data (``glmix bundle parity``): the rows are read as
the serving path would receive them (the raw Avro records, through glmix.io.examples, nulls and
unions included), scored online, and matched by uid with the scoring job's ScoringResult output
(a row without a uid by ``<file>#<position>``, the scoring job's name for it when the file was read
in one split).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from glmix.errors import DataError
from glmix.io.avro import read_avro_records
from glmix.io.examples import ColumnNames, Example, ExampleReader, to_id
from glmix.io.storage import storage_for
from glmix.serving.scorer import DEFAULT_CACHE, OnlineScorer


@dataclass
class ParityReport:
    rows: int = 0
    max_abs_difference: float = 0.0
    worst_uid: str | None = None
    over_tolerance: int = 0
    not_in_scores: int = 0
    tolerance: float = 1e-9
    coordinates_without_model: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.rows > 0 and self.over_tolerance == 0 and self.not_in_scores == 0

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "passed": self.passed}


def check_parity(bundle: str, data: str, scores: str, columns: ColumnNames = ColumnNames(),
                 tolerance: float = 1e-9, cache: Path = DEFAULT_CACHE) -> ParityReport:
    scorer = OnlineScorer(bundle, cache)
    expected = {to_id(r["uid"]): float(r["predictionScore"]) for r in read_avro_records(scores)
                if r.get("uid") is not None}
    if not expected:
        raise DataError("no scored row with a uid: parity is checked by uid", path=scores, field="uid")
    bags = tuple(sorted({b for c in scorer.coordinates for b in c.bags}))
    fields = tuple(sorted({c.entity_field for c in scorer.coordinates if c.entity_field}))
    report = ParityReport(tolerance=tolerance)
    reader = ExampleReader(columns, bags, fields)
    root = data.rstrip("/") + "/"
    try:
        for path, position, example in _numbered(reader, data):
            # a row without a uid is known to the scoring job by its file and position
            uid = example.uid if example.uid is not None else f"{path.removeprefix(root)}#{position}"
            want = expected.get(uid)
            if want is None:
                report.not_in_scores += 1
                continue
            got = scorer.score(example.bags, example.ids, example.offset)
            for name in got.without_model:
                report.coordinates_without_model[name] = report.coordinates_without_model.get(name, 0) + 1
            difference = abs(got.score - want)
            report.rows += 1
            if difference > report.max_abs_difference:
                report.max_abs_difference, report.worst_uid = difference, uid
            report.over_tolerance += difference > tolerance
    finally:
        scorer.close()
    return report


def _numbered(reader: ExampleReader, data: str) -> Iterator[tuple[str, int, Example]]:
    for path in storage_for(data).data_files(data, suffix=".avro", skip_empty=True):
        for position, example in enumerate(reader.read(path)):
            yield path, position, example
