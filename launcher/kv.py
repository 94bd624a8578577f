"""The key-value store tasks register in: Skein's on YARN, a directory for the local backend."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol


class KeyValueStore(Protocol):
    def put(self, key: str, value: str) -> None: ...

    def get_prefix(self, prefix: str) -> dict[str, str]: ...


class DirectoryStore:
    """Keys are files under a directory; writes are atomic (write, then rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, value: str) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(value)
        tmp.rename(path)

    def get_prefix(self, prefix: str) -> dict[str, str]:
        base = self.root / prefix
        if not base.exists():
            return {}
        return {str(p.relative_to(self.root)): p.read_text() for p in base.rglob("*")
                if p.is_file() and not p.name.startswith(".")}


class SkeinStore:
    """Skein's application key-value store; keys are owned by this container (gone if it dies)."""

    def __init__(self) -> None:
        import skein

        self._client = skein.ApplicationClient.from_current()
        self._owner = os.environ.get("SKEIN_CONTAINER_ID")

    def put(self, key: str, value: str) -> None:
        self._client.kv.put(key, value.encode(), owner=self._owner)

    def get_prefix(self, prefix: str) -> dict[str, str]:
        return {k: v.decode() for k, v in self._client.kv.get_prefix(prefix).items()}


def wait_for(store: KeyValueStore, prefix: str, expected: set[str], timeout: float) -> dict[str, str]:
    """Poll until every expected key (relative to prefix) is present, or raise TimeoutError naming the missing."""
    deadline = time.monotonic() + timeout
    while True:
        found = {k.removeprefix(prefix): v for k, v in store.get_prefix(prefix).items()}
        missing = expected - set(found)
        if not missing:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(", ".join(sorted(missing)))
        time.sleep(0.2)
