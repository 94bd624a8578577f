"""Files a cluster localizes (Spark's jars, the packed Python environment, glmix's code), uploaded to
HDFS once per content hash: a second flow, or the next day's run, finds them already there."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from glmix.io.storage import storage_for

CHUNK = 1 << 24


def cluster_home() -> str:
    """Where glmix keeps its uploads and job history on HDFS: the submitting user's ``.glmix``."""
    user = os.environ.get("HADOOP_USER_NAME") or os.environ.get("USER", "root")
    return f"hdfs:///user/{user}/.glmix"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def upload_once(local: Path, kind: str, digest: str | None = None) -> str:
    """``hdfs:///user/U/.glmix/KIND/DIGEST-NAME``, uploaded unless already there (written under a
    temporary name and renamed, so a reader never sees half a file). ``digest``: when the name
    already says what the content is (the caller knows it more cheaply than by reading the file)."""
    remote = f"{cluster_home()}/{kind}/{digest or file_digest(local)}-{local.name}"
    storage = storage_for(remote)
    if not storage.exists(remote):
        partial = f"{remote}.partial"
        with open(local, "rb") as src, storage.open_write(partial) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        storage.delete(remote)
        storage.rename(partial, remote)
    return remote
