"""An ``external`` coordinate: scores made outside glmix, used as the fixed effect.

    python -m glmix.train.external_scores --train SCORES_TRAIN --validation SCORES_VALID --output OUT

Reads ``uid, score`` (Avro or Parquet) for the training and validation data and publishes them as
OUT/scores/{train,validation}/ (Parquet), the layout of a fixed-effect trainer's output, so random
effects train on top of them and the scoring job adds them unchanged. A training or validation row
whose uid has no score fails the scoring stage with the count and examples.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar, TextIO

from pydantic import Field

from glmix.errors import DataError, run_command
from glmix.io.scores import read_offsets, write_scores
from glmix.io.storage import join, publish_atomically
from glmix.stage_args import Location, StageArgs


def import_scores(train: str, validation: str, output: str) -> dict[str, int]:
    counts = {}
    with publish_atomically(output) as tmp:
        for dataset, uri in (("train", train), ("validation", validation)):
            try:
                table = read_offsets(uri)
            except (KeyError, ValueError) as exc:
                raise DataError(f"external scores need columns uid and score: {exc}", path=uri) from None
            write_scores(join(tmp, "scores", dataset, "part-00000.parquet"),
                         table.column("uid").to_numpy(zero_copy_only=False), table.column("score").to_numpy())
            counts[dataset] = table.num_rows
    return counts


class ExternalScoresArgs(StageArgs):
    PROG: ClassVar[str] = "glmix.train.external_scores"

    train: Location = Field(description="uid/score Avro or Parquet of the training rows")
    validation: Location = Field(description="the same for the validation rows")
    output: Location


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    def run() -> str:
        args = ExternalScoresArgs.from_argv(argv, __doc__).resolved(cwd or Path())
        return json.dumps(import_scores(args.train, args.validation, args.output))

    return run_command(run, out)


if __name__ == "__main__":
    sys.exit(main())
