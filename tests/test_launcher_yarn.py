"""The launcher on the real YARN dev cluster: success, restart after a killed worker, failures."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.devcluster import NM_MEMORY_MB, Cluster
from launcher.events import read_events
from launcher.spec import JobSpec
from launcher.yarn import AM_MEMORY_MB, YarnBackend, history_dir, read_task_results
from tests.conftest import our_running_apps

JOB = Path(__file__).parent / "launcher_jobs" / "keras_mwms.py"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def yarn(dev_cluster: Cluster):
    yield YarnBackend()
    assert not our_running_apps(dev_cluster.conf_dir), "the test left an application running"


def keras_spec(backup: str, max_attempts: int = 1, **env) -> JobSpec:
    command = f"{sys.executable} {JOB} {backup}"
    return JobSpec.from_dict({"name": "glmix-it-keras", "max_attempts": max_attempts,
                              "timeouts": {"registration": 90},
                              "tasks": {"worker": {"instances": 2, "memory": 1024, "command": command, "env": env}}})


def all_hosts() -> list[str]:
    """The running nodes, as YARN names them."""
    listing = subprocess.run(["yarn", "node", "-list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0].split(":")[0] for line in listing.splitlines() if "RUNNING" in line]


def yarn_logs(app_id: str, *expected: str, timeout: float = 90.0) -> str:
    """An application's aggregated logs, fetched until they contain every ``expected`` text (or the
    timeout passes): YARN aggregates a finished application's logs shortly after, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        logs = subprocess.run(["yarn", "logs", "-applicationId", app_id], capture_output=True, text=True).stdout
        if all(text in logs for text in expected) or time.monotonic() > deadline:
            return logs
        time.sleep(1)


def test_killed_worker_restarts_on_another_node_and_resumes_from_hdfs(yarn: YarnBackend, hdfs_root: str) -> None:
    result = yarn.submit(keras_spec(f"{hdfs_root}/backup", max_attempts=2, GLMIX_KILL_ME_AT_EPOCH="2"))
    assert result.final_status == "SUCCEEDED" and result.attempts == 2, result.failed
    first, second = result.attempt_ids
    assert "killing itself after epoch 2" in yarn_logs(first, "killing itself after epoch 2")
    # the new attempt avoided the node where worker 1 died: its local disk is not where it resumed from
    killed_on = read_task_results(first)["worker:1"]["host"]
    retried_on = {r["host"] for r in read_task_results(second).values()}
    assert len(all_hosts()) >= 2 and killed_on not in retried_on and retried_on <= set(all_hosts())
    restarted = next(e for e in read_events(f"{history_dir()}/{result.app_id}.jsonl") if e["event"] == "attempt_restarted")
    assert restarted["avoiding"] == [killed_on]
    logs = yarn_logs(second, "worker:0 trained epochs=", "worker:1 trained epochs=")
    epochs = {int(n) for n in re.findall(r"worker:\d trained epochs=(\d+)", logs)}
    assert epochs and epochs <= {3, 4}, logs      # resumed from the epoch 1 or 2 backup published on HDFS

    # the second attempt, two TensorFlow workers under MultiWorkerMirroredStrategy, as YARN and the history saw it
    finished = subprocess.run(["yarn", "application", "-list", "-appStates", "FINISHED"], capture_output=True,
                              text=True).stdout
    assert any(second in line and "SUCCEEDED" in line for line in finished.splitlines())
    history = read_events(f"{history_dir()}/{result.app_id}.jsonl")
    assert history[0]["event"] == "application_started" and history[-1]["event"] == "application_finished"
    task_events = {e["task"]: e for e in history if e["event"] == "task_finished" and e["app_id"] == second}
    assert set(task_events) == {"worker:0", "worker:1"}
    assert all(e["exit_code"] == 0 and e["peak_rss_mb"] > 100 for e in task_events.values())  # TensorFlow workers


def test_failing_task_via_cli_exit_code_and_stderr(dev_cluster: Cluster, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"name": "glmix-it-fail", "tasks": {
        "chief": {"memory": 512, "command": "echo chief fine"},
        "worker": {"instances": 1, "memory": 512, "command": "echo 'boom: corrupt shard' >&2; exit 1"}}}))
    result = subprocess.run([sys.executable, "-m", "launcher", "submit", str(spec)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "failed task worker:0 (exit code 1" in result.stderr
    assert "boom: corrupt shard" in result.stderr
    assert not our_running_apps(dev_cluster.conf_dir)


def test_registration_timeout_fails_cleanly(yarn: YarnBackend) -> None:
    # the worker asks for a whole node, which it never gets: the application master takes part of one
    # node, and the chief more than the rest of it (so it runs on the other)
    chief_mb = NM_MEMORY_MB - AM_MEMORY_MB + 128
    spec = JobSpec.from_dict({"name": "glmix-it-noreg", "timeouts": {"registration": 15, "allocation": 600},
                              "tasks": {"chief": {"memory": chief_mb, "command": "echo never"},
                                        "worker": {"instances": 1, "memory": NM_MEMORY_MB, "command": "echo never"}}})
    result = yarn.submit(spec)
    assert result.final_status == "FAILED" and result.failed.task == "chief:0"
    assert result.failed.exit_code == 75 or "registration timeout" in result.failed.stderr_tail
    assert "never registered: worker/0" in result.failed.stderr_tail


def test_tensorboard_task_serves_the_log_dir_and_joins_the_tracking_ui(yarn: YarnBackend, tmp_path: Path) -> None:
    import threading
    import urllib.request

    logs = tmp_path / "tb"
    logs.mkdir()
    # the worker holds the application open until the page was fetched (the dev cluster's nodes are
    # this machine, so it sees the test's file), at most two minutes
    fetched = tmp_path / "fetched"
    wait = f"for i in $(seq 1200); do [ -e {fetched} ] && exit 0; sleep 0.1; done"
    job = JobSpec.from_dict({"name": "glmix-it-tensorboard", "tensorboard": True, "tensorboard_log_dir": str(logs),
                             "tasks": {"worker": {"instances": 1, "memory": 512, "command": wait}}})
    served: list[str] = []

    def fetch_while_running(app_ids: list[str]) -> None:
        for _ in range(200):
            if app_ids:
                started = [e for e in read_events(f"{history_dir()}/{app_ids[0]}.jsonl")
                           if e["event"] == "tensorboard_started"]
                if started:   # registered; TensorBoard itself may need a few seconds to listen
                    try:
                        with urllib.request.urlopen(f"http://{started[0]['address']}/", timeout=10) as page:
                            served.append(page.read().decode())
                        fetched.touch()
                        return
                    except OSError:
                        pass
            time.sleep(0.3)

    app_ids: list[str] = []
    watcher = threading.Thread(target=fetch_while_running, args=(app_ids,), daemon=True)
    watcher.start()
    result = yarn.submit(job, on_status=lambda status: app_ids.append(status.app_id) if not app_ids else None)
    watcher.join(timeout=60)
    assert result.final_status == "SUCCEEDED", result.failed      # the untracked TensorBoard does not hold it up
    assert served and "tensorboard" in served[0].lower()
    (event,) = [e for e in read_events(f"{history_dir()}/{result.app_id}.jsonl") if e["event"] == "tensorboard_started"]
    assert event["page"].endswith("/pages/tensorboard") and event["tracking_url"]


def test_packed_environment_and_code_are_shipped_once(yarn: YarnBackend, tmp_path: Path) -> None:
    """A venv-pack archive (a small bare venv; this checkout's packages come through PYTHONPATH, as
    venv-pack refuses .pth links) and a code directory: uploaded to HDFS once per content hash,
    localized by YARN, used by the task."""
    import site
    import venv

    import venv_pack

    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python_path = ":".join(["./code", *site.getsitepackages(), str(REPO)])
    archive = tmp_path / "env.tar.gz"
    venv_pack.pack(str(env), output=str(archive), compress_level=1)
    code = tmp_path / "code"
    code.mkdir()
    (code / "hello_job.py").write_text("import sys\nprint('hello from', sys.executable, flush=True)\n")
    job = JobSpec.from_dict({"name": "glmix-it-shipping", "python": {"archive": str(archive)}, "code": str(code),
                             "tasks": {"worker": {"instances": 1, "memory": 512, "env": {"PYTHONPATH": python_path},
                                                  "command": "python -m hello_job && python -c 'import numpy'"}}})
    first = yarn.submit(job)
    assert first.final_status == "SUCCEEDED", first.failed
    logs = yarn_logs(first.app_id, "hello from", "/pyenv/bin/python")
    assert "hello from" in logs and "/pyenv/bin/python" in logs
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    remote = f"/user/{os.environ.get('USER', 'root')}/.glmix/envs/{digest}-env.tar.gz"

    def modified() -> str:
        return subprocess.run(["hdfs", "dfs", "-stat", "%Y", remote], capture_output=True, text=True,
                              check=True).stdout.strip()

    uploaded = modified()
    assert yarn.submit(job).final_status == "SUCCEEDED"
    assert modified() == uploaded             # the second submission reused the upload
