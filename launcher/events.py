"""Job history as JSON lines (application and task start/finish, timings, exit codes), on any storage."""

from __future__ import annotations

import json
import time
from typing import Any

from glmix.io.storage import storage_for


class EventLog:
    """Appends events to a JSON-lines file; the whole (small) file is rewritten on each event."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._lines: list[str] = []

    def emit(self, event: str, **fields: Any) -> None:
        self._lines.append(json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=str))
        storage_for(self.uri).write_bytes(self.uri, ("\n".join(self._lines) + "\n").encode())


def read_events(uri: str) -> list[dict[str, Any]]:
    storage = storage_for(uri)
    return [json.loads(line) for line in storage.read_bytes(uri).decode().splitlines() if line.strip()]
