"""Errors that reach users: each says which file, record and field went wrong."""

from __future__ import annotations


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
