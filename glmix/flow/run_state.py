"""What a flow run knows about its nodes, kept with the flow's output on storage.

A node counts as done only when its last run succeeded with the same command, from the same inputs
(its dependencies' runs and the listing of the data it reads), and every output it declares is
still published (a ``_SUCCESS`` marker, or the file itself). So deleting an output, changing the
data under a path or resuming on another machine (an Azkaban executor is not the one that ran
yesterday) re-runs exactly what is needed; the local project directory only keeps the node logs.
Generated flows declare a node's outputs and data inputs as ``glmix.outputs`` / ``glmix.inputs``
and the state's home as the flow's ``glmix.state``; other flows fall back to the project
directory and to the command alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from glmix.errors import StorageError
from glmix.io.storage import is_published, join, storage_for, write_file_atomically

STATE_FILE = "state.json"
SMALL_FILE = 1 << 20   # a single input file this small is judged by its content, not its size


def output_present(uri: str) -> bool:
    """A published directory, or a file."""
    storage = storage_for(uri)
    return is_published(uri) or (storage.exists(uri) and not storage.is_dir(uri))


def data_fingerprint(uri: str) -> str:
    """The data files under ``uri`` and their sizes (listings only), hashed — and a small single file
    (a config) by its content; 'missing' if absent."""
    storage = storage_for(uri)
    try:
        entries = storage.data_file_sizes(uri)
    except StorageError:
        return "missing"
    if len(entries) == 1 and entries[0].uri == uri and entries[0].size <= SMALL_FILE:
        return hashlib.sha256(storage.read_bytes(uri)).hexdigest()[:16]
    listing = sorted((e.uri.removeprefix(uri), e.size) for e in entries)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NodeFacts:
    """What a node's run depends on, known before it runs."""

    command: str                    # digest of the substituted command
    inputs: dict[str, str]          # dependency -> its run's finish stamp; data path -> fingerprint
    outputs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "inputs": self.inputs, "outputs": list(self.outputs)}


def reason_to_run(previous: dict[str, Any], facts: NodeFacts) -> str | None:
    """Why a node must run again (None when its earlier run still stands)."""
    if previous.get("status") != "succeeded":
        return "not run yet" if not previous else f"last run {previous.get('status')}"
    if previous.get("command") != facts.command:
        return "command changed"
    changed = sorted(k for k in {**facts.inputs, **previous.get("inputs", {})}
                     if facts.inputs.get(k) != previous.get("inputs", {}).get(k))
    if changed:
        return f"input changed: {changed[0]}"
    missing = [o for o in facts.outputs if not output_present(o)]
    if missing:
        return f"output missing: {missing[0]}"
    return None


class RunState:
    """The nodes' records in ``DIRECTORY/state.json``, rewritten whole (atomically) after each node."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.uri = join(directory, STATE_FILE)

    def load(self) -> dict[str, Any]:
        storage = storage_for(self.uri)
        if not storage.exists(self.uri):
            return {}
        loaded: dict[str, Any] = json.loads(storage.read_bytes(self.uri))
        return loaded

    def save(self, state: dict[str, Any]) -> None:
        write_file_atomically(self.uri, json.dumps(state, indent=2).encode())
