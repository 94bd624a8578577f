"""Run tracking (issue 22 item 5): a flow with several regularization runs (a search) records its run in the registry
and logs it to a real MLflow tracking server (mlflow 3.17.2 in its own environment, started here on
loopback), read back with MLflow's own client."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cluster.devcluster import REPO
from glmix.errors import GlmixError
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.registry import ModelRegistry
from glmix.registry.tracking import track
from tests.test_demo import small_config

MLFLOW = REPO / ".cache" / "mlflow" / "venv" / "bin" / "mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    assert MLFLOW.exists(), "make mlflow-server installs the tracking server"
    uri = f"http://127.0.0.1:{free_port()}"
    log = open(tmp_path / "mlflow.log", "w")
    server = subprocess.Popen([str(MLFLOW), "server", "--host", "127.0.0.1", "--port", uri.rsplit(":", 1)[1],
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                               "--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "mlflow.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_a_searched_flow_is_recorded_in_the_registry_and_in_mlflow(tmp_path: Path, mlflow_server: str, spark) -> None:
    """Two trials of a search over the fixed effect's l2 (issue 24 item 5), which run as a grid's
    points do, with the random effect's prior variances learned in each (l2: auto, item 1)."""
    registry = ModelRegistry(str(tmp_path / "registry"))
    raw = small_config(tmp_path).to_dict()
    raw["search"] = {"trials": 2, "space": {"global.l2": {"low": 3.0, "high": 30.0}}}
    raw["coordinates"]["per-user"]["l2"] = "auto"
    config = GameConfig.from_dict({**raw, "name": "tracked", "registry": {"root": registry.root},
                                   "tracking": {"mlflow": mlflow_server, "experiment": "glmix-tracking-test"}})
    drawn = [run["global"][0] for run in config.grid()]
    assert len(set(drawn)) == 2 and all(3.0 <= v <= 30.0 for v in drawn)
    results = LocalRunner(build_project(config, tmp_path / "project")).run()
    assert all(r.status == "succeeded" for r in results), [(r.name, r.error) for r in results]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())

    # the registry, the source of truth
    [record] = registry.runs("tracked")
    tracking = json.loads((tmp_path / "out" / "tracking.json").read_text())   # the same, and MLflow's ids
    assert {k: v for k, v in tracking.items() if k != "mlflow"} == record
    assert [p["params"] for p in record["grid"]] == [
        {"global.l2": l2, "global.l1": 0.0, "per-user.l2": "auto", "per-user.l1": 0.0} for l2 in drawn]
    steps = [s for p in record["grid"] for s in p["steps"]]
    for step in steps:          # each trial's random effect learned its prior in the flow
        if step["coordinate"] == "per-user":
            learned = json.loads((Path(step["model"]) / "_report.json").read_text())["learned_prior"]
            assert learned["converged"] and set(learned["variances"]) == {"intercept", "slopes"}
    assert [s["metrics"] for s in steps] == [s["metrics"] for s in summary["steps"]]
    assert all(Path(s["model"]).is_dir() for s in steps)
    assert record["best"]["metrics"] == summary["steps"][summary["best"]]["metrics"]

    # MLflow, read back with its own client: a run with one nested run per grid point
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("glmix-tracking-test")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["glmix.run_id"] == record["run_id"] and parent.info.status == "FINISHED"
    assert tracking["mlflow"]["run_id"] == parent.info.run_id
    assert parent.data.metrics["AUC"] == pytest.approx(record["best"]["metrics"]["AUC"])
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: int(r.data.tags["glmix.grid_point"]))
    assert [c.data.params["global.l2"] for c in children] == [str(v) for v in drawn]
    for child, point in zip(children, record["grid"], strict=True):
        history = client.get_metric_history(child.info.run_id, "AUC:userId")
        logged = sorted((m.step, m.value) for m in history)
        assert [step for step, _ in logged] == [s["step"] for s in point["steps"]]
        assert [value for _, value in logged] == pytest.approx([s["metrics"]["AUC:userId"] for s in point["steps"]])
        assert child.data.tags[f"glmix.model.{point['steps'][0]['step']}.global"] == point["steps"][0]["model"]

    # a server that does not answer: one line, in seconds, after the registry has the run
    gone = GameConfig.from_dict({**config.to_dict(), "tracking": {"mlflow": f"http://127.0.0.1:{free_port()}"}})
    started = time.monotonic()
    with pytest.raises(GlmixError, match=r"^MLflow at http://127.0.0.1:\d+: API request to .* failed"):
        track(gone)
    assert time.monotonic() - started < 30 and len(registry.runs("tracked")) == 2
