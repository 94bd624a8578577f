"""The model registry on storage: numbered immutable versions, their states, a production alias.

Layout (local disk or HDFS alike)::

    REGISTRY/<model>/claims/<N>           an empty file: version N is taken (create-if-absent)
    REGISTRY/<model>/versions/<N>/        immutable, published atomically (_SUCCESS):
        metadata.json                     see glmix.registry.metadata
        model/                            the GAME model (a flow's best/)
        features/<shard>.tsv              each shard's feature list (name, term), in index order
        data-stats.json                   the training window's statistics (with a data gate)
    REGISTRY/<model>/log/<seq>.json       append-only: each a state change or an alias move
    REGISTRY/<model>/runs/<run id>.json   each flow run: parameters, metrics per step, artifact paths

Nothing is ever rewritten, so every change is one create-if-absent (a link locally, WebHDFS CREATE
without overwrite on HDFS; WebHDFS cannot rename over a file, so a rewritten alias file would be
briefly absent): two publishers never both get version N, and of two promotions racing, the log
orders them. A version's state is the last state its log entries give it (``candidate`` at
first); ``production`` is the version of the last alias entry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from glmix.errors import GlmixError
from glmix.io.storage import copy_tree, is_published, join, publish_atomically, storage_for

State = Literal["candidate", "production", "rejected", "archived"]
METADATA = "metadata.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RegistryError(GlmixError):
    """A registry operation that cannot be done (unknown version, rejected version promoted...)."""


@dataclass(frozen=True)
class Version:
    model: str
    number: int
    uri: str
    state: State
    reason: str
    metadata: dict[str, Any]

    @property
    def model_uri(self) -> str:
        return join(self.uri, "model")


class ModelRegistry:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.storage = storage_for(self.root)

    # ------------------------------------------------------------------ paths
    def _model(self, model: str) -> str:
        if not model or "/" in model or model.startswith((".", "_")):
            raise RegistryError(f"model name {model!r}: must be non-empty, without '/', not starting with '.' or '_'")
        return join(self.root, model)

    def _numbers(self, directory: str) -> list[int]:
        if not self.storage.exists(directory):
            return []
        return sorted(int(e.name.removesuffix(".json")) for e in self.storage.list(directory)
                      if e.name.removesuffix(".json").isdigit())

    # ------------------------------------------------------------------ writing
    def register(self, model: str, fill: Callable[[str], dict[str, Any]], parent: int | None = None) -> Version:
        """Claim the next version number, let ``fill(directory)`` write the version's files into a
        temporary directory and return its metadata, then publish it as a candidate."""
        root = self._model(model)
        if parent is not None:
            self.version(model, parent)   # must exist
        number = max(self._numbers(join(root, "claims")), default=0) + 1
        while not self.storage.create_new(join(root, "claims", f"{number:06d}"), b""):
            number += 1   # another publisher took it first
        uri = join(root, "versions", f"{number:06d}")
        with publish_atomically(uri) as tmp:
            metadata = {**fill(tmp), "model": model, "version": number, "parent_version": parent, "created": _now()}
            self.storage.write_bytes(join(tmp, METADATA), json.dumps(metadata, indent=2, default=str).encode())
        self._log(model, {"event": "state", "version": number, "state": "candidate", "reason": "registered"})
        return self.version(model, number)

    def register_model_dir(self, model: str, model_dir: str, metadata: dict[str, Any],
                           features: dict[str, list[tuple[str, str]]], parent: int | None = None,
                           files: dict[str, bytes] | None = None) -> Version:
        """Register a published GAME model directory (a flow's best/) with its metadata, feature lists
        and other ``files`` (name -> content, e.g. the data gate's statistics of the training window)."""
        if not is_published(model_dir):
            raise RegistryError(f"{model_dir}: not a published model (no _SUCCESS)")

        def fill(tmp: str) -> dict[str, Any]:
            copy_tree(model_dir, join(tmp, "model"))
            for shard, keys in features.items():
                self.storage.write_bytes(join(tmp, "features", f"{shard}.tsv"),
                                         "".join(f"{name}\t{term}\n" for name, term in keys).encode())
            for name, content in (files or {}).items():
                self.storage.write_bytes(join(tmp, name), content)
            return metadata

        return self.register(model, fill, parent)

    def _log(self, model: str, entry: dict[str, Any]) -> None:
        log = join(self._model(model), "log")
        entry = {**entry, "time": _now()}
        sequence = max(self._numbers(log), default=0) + 1
        while not self.storage.create_new(join(log, f"{sequence:08d}.json"), json.dumps(entry).encode()):
            sequence += 1

    def record_run(self, model: str, run_id: str, record: dict[str, Any]) -> str:
        """Keep a flow run's record (``runs/<run_id>.json``, create-if-absent: a run id is recorded once)."""
        if not run_id or "/" in run_id:
            raise RegistryError(f"run id {run_id!r}: must be non-empty, without '/'")
        uri = join(self._model(model), "runs", f"{run_id}.json")
        if not self.storage.create_new(uri, json.dumps(record, indent=2, default=str).encode()):
            raise RegistryError(f"{model}: run {run_id} is already recorded ({uri})")
        return uri

    def runs(self, model: str) -> list[dict[str, Any]]:
        """Every recorded run of ``model``, oldest first (run ids start with their UTC time)."""
        directory = join(self._model(model), "runs")
        if not self.storage.exists(directory):
            return []
        return [json.loads(self.storage.read_bytes(e.uri)) for e in sorted(self.storage.list(directory),
                                                                           key=lambda e: e.name)
                if e.name.endswith(".json")]

    def set_state(self, model: str, number: int, state: State, reason: str) -> None:
        current = self.version(model, number)
        if state == "production":
            raise RegistryError("use promote to make a version production")
        if current.state == "production":
            raise RegistryError(f"{model} version {number} is production: promote or roll back to another first")
        self._log(model, {"event": "state", "version": number, "state": state, "reason": reason})

    def promote(self, model: str, number: int, reason: str = "promoted") -> Version:
        """Move the production alias to ``number`` (the previous production version becomes archived)."""
        target = self.version(model, number)
        if target.state in ("rejected", "archived"):
            raise RegistryError(f"{model} version {number} is {target.state} ({target.reason}); "
                                "only a candidate can be promoted")
        self._log(model, {"event": "alias", "alias": "production", "version": number, "reason": reason})
        return self.version(model, number)

    def rollback(self, model: str, reason: str = "rolled back") -> Version:
        """Production back to the version that held it before the current one (still available)."""
        history = [e["version"] for e in self._entries(model) if e["event"] == "alias"]
        if not history:
            raise RegistryError(f"{model}: no production version to roll back from")
        current = history[-1]
        earlier = [v for v in reversed(history[:-1]) if v != current]
        if not earlier:
            raise RegistryError(f"{model}: version {current} is the first production version; nothing to roll back to")
        self._log(model, {"event": "alias", "alias": "production", "version": earlier[0], "reason": reason})
        self._log(model, {"event": "state", "version": current, "state": "rejected", "reason": reason})
        return self.version(model, earlier[0])

    # ------------------------------------------------------------------ reading
    def _entries(self, model: str) -> list[dict[str, Any]]:
        log = join(self._model(model), "log")
        return [json.loads(self.storage.read_bytes(join(log, f"{n:08d}.json"))) for n in self._numbers(log)]

    def models(self) -> list[str]:
        if not self.storage.exists(self.root):
            return []
        return sorted(e.name for e in self.storage.list(self.root) if e.is_dir and not e.name.startswith((".", "_")))

    def _states(self, model: str) -> tuple[dict[int, tuple[State, str]], int | None]:
        """Each version's state and reason as the log gives them, and the production version."""
        states: dict[int, tuple[State, str]] = {}
        production = None
        for e in self._entries(model):
            if e["event"] == "state":
                states[e["version"]] = (e["state"], e["reason"])
            elif e["event"] == "alias":
                states[e["version"]] = ("production", e["reason"])
                production = e["version"]
        return states, production

    def _load(self, model: str, number: int, states: dict[int, tuple[State, str]],
              production: int | None) -> Version | None:
        """Version ``number`` (None while unpublished: being published, or its publisher died)."""
        uri = join(self._model(model), "versions", f"{number:06d}")
        if not is_published(uri):
            return None
        state, reason = states.get(number, ("candidate", "registered"))
        if state == "production" and number != production:
            state, reason = "archived", f"replaced in production by version {production}"
        return Version(model, number, uri, state, reason, json.loads(self.storage.read_bytes(join(uri, METADATA))))

    def production(self, model: str) -> int | None:
        return self._states(model)[1]

    def versions(self, model: str) -> list[Version]:
        states, production = self._states(model)
        found = (self._load(model, n, states, production) for n in self._numbers(join(self._model(model), "versions")))
        return [v for v in found if v is not None]

    def version(self, model: str, number: int | None = None) -> Version:
        """Version ``number``, or the production version when None (reads that version only)."""
        states, production = self._states(model)
        if number is None:
            number = production
            if number is None:
                raise RegistryError(f"{model}: no production version in {self.root}")
        found = self._load(model, number, states, production)
        if found is None:
            raise RegistryError(f"{model}: no version {number} in {self.root}")
        return found

    def features(self, version: Version) -> dict[str, list[tuple[str, str]]]:
        directory = join(version.uri, "features")
        if not self.storage.exists(directory):
            return {}
        out = {}
        for entry in self.storage.list(directory):
            rows = (line.partition("\t") for line in self.storage.read_bytes(entry.uri).decode().splitlines())
            out[entry.name.removesuffix(".tsv")] = [(name, term) for name, _, term in rows]
        return out
