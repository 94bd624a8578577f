"""An ``external`` coordinate: scores made outside glmix, used as the fixed effect.

    python -m glmix.external_scores --train SCORES_TRAIN --validation SCORES_VALID --output OUT

Reads ``uid, score`` (Avro or Parquet) for the training and validation data and publishes them as
OUT/scores/{train,validation}/ (Parquet), the layout of a fixed-effect trainer's output, so random
effects train on top of them and the scoring job adds them unchanged. A training or validation row
whose uid has no score fails the scoring stage with the count and examples.
"""

from __future__ import annotations

import argparse
import json
import sys

from glmix.errors import DataError, run_command
from glmix.fixed_effect import write_scores
from glmix.offsets import read_offsets
from glmix.storage import join, publish_atomically


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glmix.external_scores", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    return run_command(lambda: json.dumps(import_scores(args.train, args.validation, args.output)))


if __name__ == "__main__":
    sys.exit(main())
