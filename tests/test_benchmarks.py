"""Every benchmark runs at its smoke size (bench/sizes.py), so a benchmark that breaks fails CI
instead of rotting until someone measures again. A smoke run's numbers mean nothing; each run is
checked to finish and to print its tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import available
from bench.bench_flow_scale import check_room
from cluster.devcluster import REPO, Cluster

ON_THIS_MACHINE = ["avro_read", "data_jobs", "fixed_effect", "flow_scale", "prior", "random_effect", "recovery", "serving",
                   "skew"]
ON_YARN = ["keras", "launcher"]   # they compare the local backend with YARN: integration tests
# no smoke run: shipped_flow's workload is a whole literal flow on YARN, which tests/test_game_yarn.py
# runs; week's is eight whole flows, whose first seven (the week itself, smaller) tests/test_week.py runs;
# game's is the demo (generate, its flow, the ground truth's AUC), which tests/test_demo.py runs
WITHOUT_SMOKE = ["game", "shipped_flow", "week"]


def run_smoke(name: str, bench_dir: Path) -> str:
    env = {**os.environ, "GLMIX_BENCH_SMOKE": "1", "GLMIX_BENCH_DIR": str(bench_dir)}
    done = subprocess.run([sys.executable, "-m", "bench", name], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"bench {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert f"=== bench {name}: " in done.stdout and "┃" in done.stdout, done.stdout[-3000:]  # finished, printed a table
    return done.stdout


def test_every_benchmark_has_a_smoke_test() -> None:
    assert sorted(ON_THIS_MACHINE + ON_YARN + WITHOUT_SMOKE) == available()


@pytest.mark.parametrize("name", ON_THIS_MACHINE)
def test_benchmark_runs_at_smoke_size(name: str, tmp_path: Path) -> None:
    run_smoke(name, tmp_path)


@pytest.mark.parametrize("name", ON_YARN)
def test_yarn_benchmark_runs_at_smoke_size(name: str, tmp_path: Path, dev_cluster: Cluster) -> None:
    run_smoke(name, tmp_path)


def test_a_yarn_flow_whose_worker_cannot_fit_beside_an_executor_stops_before_it_starts() -> None:
    """On 8 GB nodes the 10M flow's fixed effect waited 5 minutes for a container and failed, 25
    minutes in (2026-12-04 21:39): both nodes held a Spark executor. The bench now says so first."""
    check_room(1_000_000, 8192)
    check_room(10_000_000, 12288)
    with pytest.raises(SystemExit, match="7,168 MB worker must fit beside a 3,456 MB Spark executor.*NODE_MB=12288"):
        check_room(10_000_000, 8192)
