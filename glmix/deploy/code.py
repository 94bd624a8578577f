"""glmix's code as one zip for containers: Spark puts it on the driver's and executors' Python path
(``--py-files``), the launcher unpacks it as ``./code``. The zip is deterministic (sorted entries,
fixed timestamps), so its content hash changes only when the code does."""

from __future__ import annotations

import zipfile
from pathlib import Path

from glmix.deploy.uploads import CACHE, REPO, upload_once

# the packages a stage runs, and the Avro schemas glmix.io.schemas reads next to them
SHIPPED = ("glmix", "jobs", "launcher", "avro_schemas")


def zip_tree(root: Path, tops: tuple[str, ...], target: Path) -> Path:
    """``target``: every file under ``root/TOP`` (paths relative to ``root``; no bytecode), in sorted
    order with fixed timestamps, so the same files always give the same bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    files = sorted(p for top in tops for p in (root / top).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.writestr(zipfile.ZipInfo(str(file.relative_to(root)), date_time=(2020, 1, 1, 0, 0, 0)),
                             file.read_bytes())
    partial.replace(target)
    return target


def code_archive(root: Path = REPO) -> Path:
    """``.cache/ship/glmix-code.zip``, rewritten from the source tree (it takes well under a second)."""
    return zip_tree(root, SHIPPED, CACHE / "glmix-code.zip")


def upload_code() -> str:
    return upload_once(code_archive(), "code")
