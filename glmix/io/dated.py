"""Dated input as production data is laid out: ``ROOT/daily/YYYY/MM/DD/``, one directory a day.

A range is either fixed days (``start`` and ``end``, as Photon ML's ``--input-data-date-range``)
or the last N days before the run date (``last_days``, as ``--input-data-days-range N-1``). A
missing day is an error naming it unless ``allow_gaps`` is set; a range with no day present is
always an error. A flow passes its run date to every stage (``${glmix.run.date}``, Azkaban's flow
start date unless set), so all stages of one run read the same days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Self

from pydantic import Field, model_validator

from glmix.errors import ConfigError, DataError
from glmix.io.storage import join, storage_for
from glmix.settings import Settings

DAILY = "daily"


class DateRange(Settings):
    start: date | None = None
    end: date | None = None
    last_days: int | None = Field(None, ge=1, description="the N days before the run date")
    allow_gaps: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        fixed = self.start is not None and self.end is not None
        if fixed == (self.last_days is not None) or (self.start is None) != (self.end is None):
            raise ValueError("give start and end, or last_days")
        if fixed and self.end < self.start:   # type: ignore[operator]  # both set when fixed
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def days(self, run_date: date | None) -> list[date]:
        if self.start is not None and self.end is not None:
            first, last = self.start, self.end
        else:
            if run_date is None:
                raise ConfigError("last_days needs the run date (--run-date)")
            assert self.last_days is not None
            first, last = run_date - timedelta(days=self.last_days), run_date - timedelta(days=1)
        return [first + timedelta(days=k) for k in range((last - first).days + 1)]


@dataclass(frozen=True)
class DatedDays:
    """A range resolved against a run's date: what a stage reads of a dated input."""

    range: DateRange
    run_date: date | None = None

    def directories(self, root: str) -> list[str]:
        return day_directories(root, self.range, self.run_date)


def day_directory(root: str, day: date) -> str:
    return join(root, DAILY, f"{day:%Y/%m/%d}")


def day_directories(root: str, dates: DateRange, run_date: date | None) -> list[str]:
    """The directories of the range's days under ``root`` that exist (all of them, unless gaps are allowed)."""
    storage = storage_for(root)
    days = dates.days(run_date)
    found = [day_directory(root, d) for d in days if storage.exists(day_directory(root, d))]
    missing = [d for d in days if day_directory(root, d) not in found]
    if missing and not dates.allow_gaps:
        raise DataError(f"{len(missing)} day(s) of {days[0]}..{days[-1]} missing, first {missing[0]} "
                        f"(expected {day_directory(root, missing[0])}; allow_gaps: true to go on without them)",
                        path=root)
    if not found:
        raise DataError(f"no day of {days[0]}..{days[-1]} present under {join(root, DAILY)}", path=root)
    return found


def parse_run_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--run-date {value!r}: expected YYYY-MM-DD") from None
