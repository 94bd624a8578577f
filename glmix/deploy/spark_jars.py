"""Spark's own jars as one HDFS archive (``spark.yarn.archive``): without it every YARN submission
uploads pyspark's ~460 MB of jars again (Spark warns `Neither spark.yarn.jars nor spark.yarn.archive
is set`)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pyspark

from glmix.deploy.uploads import REPO, upload_once

CACHE = REPO / ".cache" / "spark"


def spark_jars_archive() -> str:
    """The HDFS URI of a zip of pyspark's jars (stored, not compressed: jars are compressed already),
    made and uploaded once per set of jar names (pyspark's version is in them)."""
    jars_dir = Path(pyspark.__file__).parent / "jars"
    names = sorted(p.name for p in jars_dir.glob("*.jar"))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    local = CACHE / f"spark-jars-{pyspark.__version__}.zip"
    stamp = local.with_suffix(".digest")
    if not local.exists() or not stamp.exists() or stamp.read_text() != digest:
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = local.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
            for name in names:
                archive.write(jars_dir / name, name)
        partial.rename(local)
        stamp.write_text(digest)
    return upload_once(local, "spark", digest)
