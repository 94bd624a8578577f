"""Launcher specs and the local backend (the same scenarios run on YARN in test_launcher_yarn.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glmix.errors import ConfigError
from launcher.local import LocalBackend
from launcher.spec import JobSpec
from launcher.task import tf_config

JOB = Path(__file__).parent / "launcher_jobs" / "keras_mwms.py"


def spec_dict(**overrides) -> dict:
    base = {"name": "t", "max_attempts": 1, "timeouts": {"registration": 60},
            "tasks": {"worker": {"instances": 2, "memory": 512, "command": "true"}}}
    base.update(overrides)
    return base


@pytest.mark.parametrize("change,message", [
    ({"bogus": 1}, r"bogus: Extra inputs are not permitted"),
    ({"tasks": {"worker": {"instances": 0, "command": "x"}}}, r"tasks.worker.instances: Input should be greater"),
    ({"tasks": {"worker": {"memory": 64, "command": "x"}}}, r"tasks.worker.memory: .*at least 256 MB"),
    ({"tasks": {"worker": {"instances": 1}}}, r"tasks.worker.command: Field required"),
    ({"tasks": {"worker; rm -rf /": {"command": "x"}}}, r"tasks: .*task type 'worker; rm -rf /' must match"),
    ({"name": "a b$(x)"}, r"name: String should match pattern"),
    ({"tasks": {"worker": {"command": "x", "env": {"A=B": "1"}}}}, r"tasks.worker.env: .*not a plain name"),
])
def test_invalid_specs_are_rejected_naming_the_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JobSpec.from_dict(spec_dict(**change))


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec_dict()))
    spec = JobSpec.from_yaml(path, ["tasks.worker.instances=3", "queue=prod"])
    assert spec.tasks["worker"].instances == 3 and spec.queue == "prod"
    assert JobSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="tasks.worker.instances"):
        JobSpec.from_yaml(path, ["tasks.worker.instances=-1"])


def test_tf_config_keeps_the_evaluator_out() -> None:
    spec = JobSpec.from_dict(spec_dict(tasks={"chief": {"command": "x"}, "worker": {"instances": 2, "command": "x"},
                                              "evaluator": {"command": "x"}}))
    addresses = {"chief/0": "h:1", "worker/0": "h:2", "worker/1": "h:3", "evaluator/0": "h:4"}
    worker = tf_config(spec, addresses, "worker", 1)
    assert worker == {"cluster": {"chief": ["h:1"], "worker": ["h:2", "h:3"]}, "task": {"type": "worker", "index": 1}}
    assert tf_config(spec, addresses, "evaluator", 0)["cluster"] == {"evaluator": ["h:4"]}
    assert not spec.is_tracked("evaluator") and spec.is_tracked("worker")


def keras_spec(backup: Path, **env) -> JobSpec:
    command = f"{sys.executable} {JOB} {backup}"
    return JobSpec.from_dict(spec_dict(max_attempts=2, tasks={"worker": {"instances": 2, "memory": 1024,
                                                                         "command": command, "env": env}}))


def logs(run: Path, attempt: int, task: str) -> str:
    return (run / "logs" / f"attempt-{attempt}" / task / "stdout").read_text()


def test_two_workers_train_with_mwms(tmp_path: Path) -> None:
    result = LocalBackend(tmp_path / "runs").submit(keras_spec(tmp_path / "backup"))
    assert result.final_status == "SUCCEEDED" and result.attempts == 1, result.failed
    run = tmp_path / "runs" / result.app_id
    for task in ("worker-0", "worker-1"):
        assert "trained epochs=6" in logs(run, 1, task)


def test_killed_worker_restarts_the_attempt_and_resumes(tmp_path: Path) -> None:
    result = LocalBackend(tmp_path / "runs").submit(keras_spec(tmp_path / "backup", GLMIX_KILL_ME_AT_EPOCH="2"))
    assert result.final_status == "SUCCEEDED" and result.attempts == 2, result.failed
    run = tmp_path / "runs" / result.app_id
    assert "killing itself after epoch 2" in logs(run, 1, "worker-1")
    # BackupAndRestore resumed from epoch 3: attempt 2 ran only the remaining epochs
    assert "trained epochs=3" in logs(run, 2, "worker-0")
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events.count("attempt_restarted") == 1 and events[-1] == "application_finished"


def test_failing_task_fails_the_job_with_its_stderr(tmp_path: Path) -> None:
    spec = JobSpec.from_dict(spec_dict(tasks={
        "chief": {"command": "echo chief-ok"},
        "worker": {"instances": 2, "command": "echo 'boom: bad input' >&2; exit 1"}}))
    result = LocalBackend(tmp_path / "runs").submit(spec)
    assert result.final_status == "FAILED" and result.failed.exit_code == 1
    assert result.failed.task.startswith("worker:") and "boom: bad input" in result.failed.stderr_tail


def test_task_that_never_registers_times_out(tmp_path: Path) -> None:
    stuck = tmp_path / "stuck"
    stuck.mkdir()
    (stuck / "sitecustomize.py").write_text("import time\ntime.sleep(3600)\n")  # a container that never starts
    spec = JobSpec.from_dict(spec_dict(timeouts={"registration": 5}, tasks={
        "chief": {"command": "echo never-runs"},
        "worker": {"instances": 1, "command": "echo never-runs", "env": {"PYTHONPATH": str(stuck)}}}))
    result = LocalBackend(tmp_path / "runs").submit(spec)
    assert result.final_status == "FAILED"
    assert result.failed.task == "chief:0" and result.failed.exit_code == 75
    assert "registration timeout after 5s: never registered: worker/0" in result.failed.stderr_tail


def test_history_records_application_and_tasks(tmp_path: Path) -> None:
    allocate = "python -c 'import numpy as np; a = np.ones(40_000_000); print(a.sum())'"   # ~320 MB
    spec = JobSpec.from_dict(spec_dict(tensorboard_log_dir="/logs/tb", tasks={"worker": {"instances": 1,
                                                                                        "command": allocate}}))
    result = LocalBackend(tmp_path / "runs").submit(spec)
    assert result.final_status == "SUCCEEDED"
    events = [json.loads(line) for line in (tmp_path / "runs" / result.app_id / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "application_started" and events[0]["tensorboard_log_dir"] == "/logs/tb"
    assert [e["event"] for e in events[1:]] == ["task_started", "task_finished", "application_finished"]
    assert events[2]["exit_code"] == 0 and events[-1]["final_status"] == "SUCCEEDED"
    assert 300 < events[2]["peak_rss_mb"] < 1000   # the command's peak memory, not the runtime's


def test_spec_templates_validate() -> None:
    templates = sorted((Path(__file__).resolve().parents[1] / "yarn_specs").glob("*.yaml"))
    assert len(templates) >= 2
    for template in templates:
        spec = JobSpec.from_yaml(template)
        assert spec.is_tracked("worker")
    keras = JobSpec.from_yaml(templates[[t.name for t in templates].index("keras_fixed_effect.yaml")])
    assert not keras.is_tracked("tensorboard") and "--logdir /shared/glmix/tensorboard/movielens" in \
        keras.tasks["tensorboard"].command


def test_submit_prints_the_application_id_and_task_states(tmp_path: Path) -> None:
    """The CLI's live status line, as a user runs it: application id, attempt, every task's state
    (the local backend once passed its attempt number and exit codes where these belong)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict(tasks={"worker": {"instances": 2, "memory": 512, "command": "sleep 1"}})))
    done = subprocess.run([sys.executable, "-m", "launcher", "submit", str(spec), "--backend", "local"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("local_")]
    app_id = lines[-1].split(":")[0]
    assert any(line == f"{app_id} attempt 1: worker:0=RUNNING, worker:1=RUNNING" for line in lines), lines
    assert lines[-1] == f"{app_id}: SUCCEEDED after 1 attempt(s)"
    assert (tmp_path / ".launcher" / app_id / "events.jsonl").exists()
