"""Errors that reach users: each says which file, record and field went wrong."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO


class GlmixError(Exception):
    """Base class for every error glmix reports to users as a one-line message."""


class ConfigError(GlmixError):
    """A configuration or spec value is invalid; the message names the key."""


class StorageError(GlmixError):
    """A path cannot be read or written (missing, unreachable namenode, permission...)."""


class DataError(GlmixError):
    """A record is unusable. Carries where it came from so the message can name it."""

    def __init__(self, message: str, *, path: str | None = None, record: int | None = None,
                 field: str | None = None) -> None:
        self.path = path
        self.record = record
        self.field = field
        self.reason = message
        where = []
        if path is not None:
            where.append(str(path))
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


def run_command(body: Callable[[], str], out: TextIO | None = None) -> int:
    """A command's body: print the line it returns (exit 0), or its GlmixError as one line (exit 1);
    to ``out`` when given (a flow node's log), else to stdout and stderr."""
    try:
        print(body(), file=out or sys.stdout)
    except GlmixError as exc:
        print(f"error: {exc}", file=out or sys.stderr)
        return 1
    return 0
