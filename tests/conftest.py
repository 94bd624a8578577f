"""Shared fixtures. Any test that uses `dev_cluster` is an integration test (marked automatically)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.devcluster import REPO, Cluster

SHARED_DATA = Path(os.environ.get("GLMIX_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "dev_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def our_running_apps(conf_dir: Path) -> list[str]:
    """Ids of YARN applications still running on the dev cluster, via the real `yarn` CLI."""
    out = subprocess.run(["yarn", "application", "-list"], capture_output=True, text=True, check=True,
                         env={**os.environ, "HADOOP_CONF_DIR": str(conf_dir)}).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("application_")]


@pytest.fixture(scope="session")
def dev_cluster() -> Iterator[Cluster]:
    """The real single-node HDFS + YARN cluster: reused if running, else started and stopped after."""
    cluster = Cluster.from_environment()
    started = cluster.up()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HADOOP_CONF_DIR", str(cluster.conf_dir))
        patch.setenv("YARN_CONF_DIR", str(cluster.conf_dir))
        patch.setenv("PATH", f"{REPO / 'bin'}{os.pathsep}{os.environ['PATH']}")
        patch.delenv("GLMIX_WEBHDFS_URL", raising=False)
        yield cluster
        leftovers = our_running_apps(cluster.conf_dir)
    if started:
        cluster.down()
    assert not leftovers, f"YARN applications still running after the tests: {leftovers}"


@pytest.fixture
def hdfs_root(dev_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh HDFS directory for one test, removed afterwards."""
    from glmix.io.storage import storage_for

    uri = f"hdfs:///tmp/glmix-tests/{request.node.name.replace('[', '_').replace(']', '')}"
    storage = storage_for(uri)
    storage.delete(uri)
    yield uri
    storage.delete(uri)


@pytest.fixture(params=["local", pytest.param("hdfs", marks=pytest.mark.integration)])
def storage_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A writable root on local disk, and (integration) the same on real HDFS."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("hdfs_root")


@pytest.fixture(scope="session")
def a9a_path() -> Path:
    path = SHARED_DATA / "a9a"
    assert path.exists(), f"benchmark data missing: {path}"
    return path


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the tests that run jobs in-process."""
    from glmix.spark.session import session

    spark = session("local[2]", "glmix-tests", quick_start=True)   # many small jobs: see glmix.spark.session
    yield spark
    spark.stop()
