"""The local backend: the same spec and task runtime as local subprocesses, no YARN.

The failure policy is the YARN backend's: a chief failure fails the job; another tracked task's
failure restarts the whole attempt (every task, so training resumes from its checkpoint) up to
``max_attempts``; the job succeeds when every tracked task has exited 0, and untracked tasks
(ps, evaluator, tensorboard) are then stopped. Nothing is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from launcher.backend import (
    AttemptStatus,
    JobResult,
    Status,
    StatusCallback,
    TaskOutcome,
    interrupted,
    run_attempts,
)
from launcher.events import EventLog
from launcher.spec import JobSpec

POLL_S = 0.2


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class LocalBackend:
    def __init__(self, root: str | Path = ".launcher") -> None:
        self.root = Path(root)

    def submit(self, spec: JobSpec, on_status: StatusCallback | None = None) -> JobResult:
        app_id = f"local_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"
        run_dir = self.root / app_id
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text(json.dumps(spec.to_dict(), indent=2))
        events = EventLog(str(run_dir / "events.jsonl"))
        events.emit("application_started", app_id=app_id, name=spec.name, backend="local",
                    tensorboard_log_dir=spec.tensorboard_log_dir)
        started = time.monotonic()
        result = run_attempts(
            spec, JobResult(app_id, "FAILED", 0),
            lambda attempt: self._attempt(spec, run_dir, app_id, attempt, events, started, on_status),
            lambda attempt, reason: events.emit("attempt_restarted", app_id=app_id, attempt=attempt, reason=reason))
        events.emit("application_finished", app_id=app_id, final_status=result.final_status,
                    attempts=result.attempts, reason=result.reason, seconds=round(time.monotonic() - started, 3))
        return result

    def _attempt(self, spec: JobSpec, run_dir: Path, app_id: str, attempt: int, events: EventLog,
                 started: float, on_status: StatusCallback | None) -> tuple[AttemptStatus, TaskOutcome | None]:
        procs: dict[str, tuple[subprocess.Popen[bytes], Path, float]] = {}
        kv_dir = run_dir / "kv"
        spec_json = json.dumps(spec.to_dict())
        for task_type, index in spec.instances():
            name = f"{task_type}:{index}"
            log_dir = run_dir / "logs" / f"attempt-{attempt}" / f"{task_type}-{index}"
            log_dir.mkdir(parents=True)
            command = [sys.executable, "-m", "launcher.task", "--spec", spec_json, "--type", task_type,
                       "--index", str(index), "--attempt", str(attempt), "--kv-dir", str(kv_dir),
                       "--run-id", app_id, "--results-dir", str(run_dir / "results" / f"attempt-{attempt}")]
            env = {**os.environ, **spec.tasks[task_type].env}  # as a container's environment
            proc = subprocess.Popen(command, stdout=open(log_dir / "stdout", "wb"), env=env,
                                    stderr=open(log_dir / "stderr", "wb"), start_new_session=True)
            procs[name] = (proc, log_dir, time.monotonic())
            events.emit("task_started", app_id=app_id, task=name, attempt=attempt, pid=proc.pid)
        try:
            while True:
                time.sleep(POLL_S)
                codes = {name: proc.poll() for name, (proc, _, _) in procs.items()}
                if on_status:
                    on_status(Status(app_id, attempt, {name: _state(code) for name, code in codes.items()}))
                for name, code in codes.items():
                    if code not in (None, 0) and spec.is_tracked(name.split(":")[0]):
                        proc, log_dir, t0 = procs[name]
                        events.emit("task_finished", app_id=app_id, task=name, attempt=attempt, exit_code=code,
                                    seconds=round(time.monotonic() - t0, 3),
                                    peak_rss_mb=_peak_rss_mb(run_dir, attempt, name))
                        outcome = TaskOutcome(name, code, _tail(log_dir / "stderr"), str(log_dir))
                        return ("chief_failed" if name.startswith("chief:") else "task_failed"), outcome
                tracked = [c for n, c in codes.items() if spec.is_tracked(n.split(":")[0])]
                if tracked and all(c == 0 for c in tracked):
                    for name, code in codes.items():
                        if code == 0:
                            events.emit("task_finished", app_id=app_id, task=name, attempt=attempt, exit_code=0,
                                        seconds=round(time.monotonic() - procs[name][2], 3),
                                        peak_rss_mb=_peak_rss_mb(run_dir, attempt, name))
                    return "SUCCEEDED", None
                if time.monotonic() - started > spec.timeouts.job:
                    return "job_timeout", TaskOutcome("job", None, f"job timeout of {spec.timeouts.job:.0f}s", "")
        except KeyboardInterrupt:
            return interrupted()
        finally:
            for proc, _, _ in procs.values():
                _stop(proc)


def _state(exit_code: int | None) -> str:
    """A process's state in YARN's words."""
    return "RUNNING" if exit_code is None else "SUCCEEDED" if exit_code == 0 else "FAILED"


def _peak_rss_mb(run_dir: Path, attempt: int, name: str) -> float | None:
    """The peak memory the task runtime recorded for its command (None if it died before writing it)."""
    path = run_dir / "results" / f"attempt-{attempt}" / f"{name.replace(':', '-')}.json"
    return json.loads(path.read_text()).get("peak_rss_mb") if path.exists() else None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a task and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
