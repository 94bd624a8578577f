"""Files a cluster localizes (Spark's jars, the packed Python environment, glmix's code), uploaded to
HDFS once per content hash: a second flow, or the next day's run, finds them already there."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from glmix.errors import StorageError
from glmix.io.storage import storage_for, with_namenode

CHUNK = 1 << 24
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "ship"      # the local copies of what is shipped


def cluster_home() -> str:
    """Where glmix keeps its uploads and job history on HDFS: the submitting user's ``.glmix``, with
    the namenode spelled out, so Spark and the launcher name a shipped file alike (one cached copy)."""
    user = os.environ.get("HADOOP_USER_NAME") or os.environ.get("USER", "root")
    return with_namenode(f"hdfs:///user/{user}/.glmix")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def upload_once(local: Path, kind: str, digest: str | None = None, root: str | None = None) -> str:
    """``ROOT/KIND/DIGEST-NAME`` (ROOT: :func:`cluster_home`), uploaded unless already there. Written
    under a name of its own and renamed, so a reader never sees half a file; when two uploads race,
    the second finds the first's file (same content) and drops its copy. ``digest``: when the caller
    knows what the content is more cheaply than by reading the file."""
    remote = f"{root or cluster_home()}/{kind}/{digest or file_digest(local)}-{local.name}"
    storage = storage_for(remote)
    if storage.exists(remote):
        return remote
    partial = f"{remote}.{uuid.uuid4().hex}.partial"
    with open(local, "rb") as src, storage.open_write(partial) as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    try:
        storage.rename(partial, remote)
    except StorageError:
        if not storage.exists(remote):
            raise
        storage.delete(partial)
    return remote
