"""A serving bundle: what an online scorer needs of a GAME model, in files a serving host copies.

    BUNDLE/manifest.json                       the model's identity, its coordinates, every file's sha256
    BUNDLE/coordinates/<name>/fixed.arrow      a fixed effect: name, term, value (one compact file)
    BUNDLE/coordinates/<name>/features.arrow   a random effect's feature index: name, term (row = index)
    BUNDLE/coordinates/<name>/shard-NNNNN.lmdb a random effect's entities (glmix.serving.entity_store)
    BUNDLE/_SUCCESS                            published atomically by the export job

A bundle on HDFS is copied to a local directory first (LMDB maps local files); the copy is checked
against the manifest's digests, so a host never serves a half-copied or altered bundle.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from glmix.errors import ConfigError
from glmix.io.storage import SUCCESS_MARKER, LocalStorage, join, storage_for

MANIFEST = "manifest.json"
FORMAT = 1


class BundleCoordinate(BaseModel):
    """One coordinate as the scorer applies it: which bags it reads, its intercept, its entity field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: Literal["fixed", "random"]
    bags: tuple[str, ...]
    intercept: bool
    entity_field: str | None = None
    features: int = Field(description="size of the coordinate's feature index")
    entities: int = 0
    shards: int = 0


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    model: str = Field(description="where the model came from: a GAME model directory or registry model:version")
    model_id: str
    version: int | None = None
    task: str | None = None
    created: str
    coordinates: tuple[BundleCoordinate, ...]
    files: dict[str, str] = Field(description="relative path -> sha256 of every data file")

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2).encode()


def coordinate_dir(name: str) -> str:
    return f"coordinates/{name}"


def sha256_of(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle: str) -> Manifest:
    path = join(bundle, MANIFEST)
    storage = storage_for(path)
    if not storage.exists(join(bundle, SUCCESS_MARKER)) or not storage.exists(path):
        raise ConfigError(f"{bundle}: not a published serving bundle (no {MANIFEST} or {SUCCESS_MARKER})")
    manifest = Manifest.model_validate_json(storage.read_bytes(path))
    if manifest.format != FORMAT:
        raise ConfigError(f"{bundle}: bundle format {manifest.format}; this glmix reads format {FORMAT}")
    return manifest


def local_copy(bundle: str, cache: Path, verify: bool = True) -> tuple[Path, Manifest]:
    """A local directory holding ``bundle``: the bundle itself when local, else a copy in ``cache``
    named by the manifest's digest (copied once, always verified); ``verify`` checks every file of a
    local bundle against the manifest (a mismatch is an error naming the file)."""
    manifest = read_manifest(bundle)
    storage = storage_for(bundle)
    if isinstance(storage, LocalStorage):
        root = Path(bundle.removeprefix("file://"))
        if verify:
            _verify(root, manifest, bundle)
        return root, manifest
    target = cache / hashlib.sha256(manifest.to_json()).hexdigest()[:16]
    if not (target / SUCCESS_MARKER).exists():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for relative in [MANIFEST, *manifest.files]:
            (partial / relative).parent.mkdir(parents=True, exist_ok=True)
            with storage.open_read(join(bundle, relative)) as source, open(partial / relative, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
        _verify(partial, manifest, bundle)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        (target / SUCCESS_MARKER).touch()
    return target, manifest


def _verify(root: Path, manifest: Manifest, bundle: str) -> None:
    for relative, expected in manifest.files.items():
        path = root / relative
        if not path.exists():
            raise ConfigError(f"{bundle}: {relative} is listed in the manifest but missing")
        with open(path, "rb") as stream:
            if sha256_of(stream) != expected:
                raise ConfigError(f"{bundle}: {relative} does not match the manifest's sha256")
