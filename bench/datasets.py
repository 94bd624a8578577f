"""Benchmark datasets, generated once and cached under .bench/ (or on HDFS) by their parameters."""

from __future__ import annotations

import os
from pathlib import Path

from glmix.data.synthetic import generate, generic_spec
from glmix.io.libsvm import import_libsvm
from glmix.io.storage import is_published, join
from glmix.settings import Task

CACHE = Path(os.environ.get("GLMIX_BENCH_DIR", Path(__file__).resolve().parents[1] / ".bench"))
SHARED_DATA = Path(os.environ.get("GLMIX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def synthetic(rows: int, users: int | None = None, items: int = 10_000, context_dimension: int = 100_000,
              context_nnz: int = 20, task: Task = "logistic", root: str | None = None,
              top_user_share: float | None = None) -> str:
    """A generic synthetic dataset (~context_nnz + 10 non-zeros a row); returns its directory.
    ``top_user_share``: the most active user's share of the rows (a skewed world: the other users
    then follow a flatter Zipf law, exponent 0.5, so that the top one stands out alone)."""
    users = users or max(1, rows // 10)
    name = f"synthetic-{task}-{rows}-{users}-{items}-{context_dimension}-{context_nnz}" + (
        f"-top{top_user_share}" if top_user_share else "")
    path = join(root or str(CACHE), name)
    if not is_published(path):
        spec = generic_spec(rows=rows, users=users, items=items, task=task, context_dimension=context_dimension,
                            context_nnz=context_nnz)
        if top_user_share:
            user = spec.entities[0].model_copy(update={"top_share": top_user_share, "zipf_exponent": 0.5})
            spec = spec.model_copy(update={"entities": [user, *spec.entities[1:]]})
        print(f"generating {rows:,} rows into {path} (cached for later runs) ...", flush=True)
        generate(spec, path, processes=os.cpu_count() or 1)
    return path


def libsvm(name: str) -> str:
    """A LIBSVM file from shared/data converted to TrainingExample Avro (cached)."""
    path = str(CACHE / name)
    if not is_published(path):
        import_libsvm(str(SHARED_DATA / name), path)
    return path
