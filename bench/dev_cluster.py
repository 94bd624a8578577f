"""The dev cluster for benchmarks that run on YARN: started if needed, environment set, stopped after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cluster.devcluster import Cluster


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    cluster = Cluster.from_environment()
    started = cluster.up()
    os.environ.setdefault("HADOOP_CONF_DIR", str(cluster.conf_dir))
    os.environ["PATH"] = f"{Path(__file__).resolve().parents[1] / 'bin'}{os.pathsep}{os.environ['PATH']}"
    try:
        yield cluster
    finally:
        if started:
            cluster.down()
