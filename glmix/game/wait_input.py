"""The first stage of a scheduled flow: wait until every input day of this run is complete.

A day is complete when its directory holds ``_SUCCESS`` (what the upstream pipeline writes last).
The run's days are the training and validation ranges resolved against the run date; this stage
polls until all are there or ``schedule.input_wait_minutes`` have passed, then fails naming the
first day still missing — instead of a training that reads a half-written day.

    python -m glmix.game.wait_input CONFIG.yaml RUN_DATE
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from glmix.errors import GlmixError, run_command
from glmix.game.config import GameConfig
from glmix.io.dated import day_directory, parse_run_date
from glmix.io.storage import SUCCESS_MARKER, join, storage_for


def missing_markers(config: GameConfig, run_date: str) -> list[str]:
    """The ``_SUCCESS`` markers of this run's input days that do not exist yet."""
    day = parse_run_date(run_date)
    markers = []
    for root, dates in ((config.input.train, config.input.train_dates),
                        (config.input.validation, config.input.validation_dates)):
        if dates is not None:
            markers += [join(day_directory(root, d), SUCCESS_MARKER) for d in dates.days(day)]
    return [m for m in dict.fromkeys(markers) if not storage_for(m).exists(m)]


def wait_for_input(config: GameConfig, run_date: str, say: Callable[[str], None] = print,
                   clock: Callable[[], float] = time.monotonic) -> str:
    schedule = config.schedule
    wait = 60 * schedule.input_wait_minutes if schedule else 0.0
    poll = schedule.poll_seconds if schedule else 60.0
    deadline = clock() + wait
    while True:
        missing = missing_markers(config, run_date)
        if not missing:
            return f"input of {run_date} complete"
        if clock() >= deadline:
            raise GlmixError(f"input for run date {run_date} not ready after {wait / 60:g} min: {len(missing)} "
                             f"day marker(s) missing, first {missing[0]}")
        say(f"waiting for {len(missing)} input day(s), first {missing[0]}")
        time.sleep(min(poll, max(0.0, deadline - clock())))


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m glmix.game.wait_input CONFIG.yaml RUN_DATE", file=out or sys.stderr)
        return 2
    config = (cwd or Path()) / args[0]

    def say(line: str) -> None:
        print(line, file=out or sys.stdout, flush=True)

    return run_command(lambda: wait_for_input(GameConfig.from_yaml(config), args[1], say), out)


if __name__ == "__main__":
    sys.exit(main())
