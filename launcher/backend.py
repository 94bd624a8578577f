"""What every backend shares: the result types, the status callback, and the attempt loop.

A backend (local processes or YARN) runs one *attempt* of a job at a time; ``run_attempts`` decides
what follows an attempt, the same way for both: success ends the job; a failed chief, a timeout,
an allocation that never came or a kill end it as failed; any other tracked task's failure starts a
new attempt (every task, so training resumes from its checkpoints) while attempts remain. On YARN
a new attempt avoids the nodes where tasks failed, as long as other nodes remain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from launcher.spec import JobSpec

FinalStatus = Literal["SUCCEEDED", "FAILED", "KILLED"]
# why an attempt ended; the first is success, the others name a failure
AttemptStatus = Literal["SUCCEEDED", "chief_failed", "task_failed", "task_lost", "preempted", "job_timeout",
                        "allocation_timeout", "killed"]
NOT_RETRIED: frozenset[str] = frozenset({"chief_failed", "job_timeout", "allocation_timeout", "killed"})


@dataclass
class TaskOutcome:
    """The task that decided a failed attempt, and what it left behind."""

    task: str                 # "worker:1", or "job" / "client" for a timeout or an interrupt
    exit_code: int | None
    stderr_tail: str
    where: str                # a log directory, or "container on node"
    node: str = ""            # YARN: the host the task ran on, which a new attempt avoids


@dataclass
class JobResult:
    app_id: str
    final_status: FinalStatus
    attempts: int
    reason: str = ""
    failed: TaskOutcome | None = None
    attempt_ids: list[str] = field(default_factory=list)  # YARN: one application per attempt

    @property
    def exit_code(self) -> int:
        return 0 if self.final_status == "SUCCEEDED" else 1


@dataclass(frozen=True)
class Status:
    """A snapshot of a running attempt, for progress display: each task's state by "type:index"
    (WAITING, RUNNING, SUCCEEDED, FAILED, KILLED, ...)."""

    app_id: str
    attempt: int
    tasks: dict[str, str]


StatusCallback = Callable[[Status], None]
AttemptFunction = Callable[[int], tuple[AttemptStatus, TaskOutcome | None]]


class Backend(Protocol):
    def submit(self, spec: JobSpec, on_status: StatusCallback | None = None) -> JobResult:
        """Runs the job to its end (attempts included) and returns how it ended."""
        ...


def run_attempts(spec: JobSpec, result: JobResult, attempt: AttemptFunction,
                 on_restart: Callable[[int, str], None]) -> JobResult:
    """Runs ``attempt(1)``, ``attempt(2)``, ... until one succeeds, one fails in a way a new attempt
    cannot fix, or ``spec.max_attempts`` are used; ``on_restart(k, reason)`` is told before attempt
    k + 1 starts. Fills and returns ``result``."""
    for k in range(1, spec.max_attempts + 1):
        result.attempts = k
        status, failed = attempt(k)
        if status == "SUCCEEDED":
            result.final_status, result.failed, result.reason = "SUCCEEDED", None, ""
            return result
        result.failed, result.reason = failed, status
        result.final_status = "KILLED" if status == "killed" else "FAILED"
        if status in NOT_RETRIED or k == spec.max_attempts:
            return result
        on_restart(k, status)
    return result


def interrupted() -> tuple[AttemptStatus, TaskOutcome]:
    """The outcome of an attempt stopped by Ctrl-C (everything it started is stopped)."""
    return "killed", TaskOutcome("client", None, "interrupted: application killed", "")
