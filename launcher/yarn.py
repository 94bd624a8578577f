"""The YARN backend: one Skein application per attempt, one Skein service per task type.

Each container runs the task runtime (launcher.task), which registers in Skein's key-value store
and waits at the barrier before starting the user's command with TF_CONFIG. The client watches
the containers: when every tracked task has succeeded it shuts the application down as SUCCEEDED
(untracked tasks such as ps are stopped with it); a failed chief fails the job; another failed
tracked task fails the attempt, and a new attempt (a new application) starts while attempts
remain, so training resumes from its checkpoints: on other nodes than the ones where tasks failed
(a bad disk or a lost node), while the cluster has others, so what a restarted task needs must be
on shared storage. Allocation and job timeouts kill the
application; so does Ctrl-C. Preempted containers (YARN exit status -102) are reported as
preemptions, not task failures.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from glmix.deploy import cluster_home, upload_once, zip_tree
from glmix.io.storage import HdfsStorage, storage_for
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
from launcher.spec import TENSORBOARD_TASK, JobSpec

AM_MEMORY_MB = 512
POLL_S = 1.0
PREEMPTED_EXIT = -102


def history_dir() -> str:
    return f"{cluster_home()}/history"


def _code_archive(code: str) -> str:
    """A directory is zipped (deterministically) and uploaded; an existing archive is used as is."""
    path = Path(code)
    if "://" in code or not path.is_dir():
        return code if "://" in code else upload_once(path, "code")
    return upload_once(zip_tree(path, (".",), Path(tempfile.mkdtemp()) / f"{path.name}.zip"), "code")


def _cached_visibility(uri: str) -> str:
    """How YARN keeps a shipped archive on each node, so later jobs skip unpacking it again: in the
    node's public cache when everyone may read it, as Spark decides for the same file (then Spark's
    executors and launcher tasks share one copy), else in the user's cache."""
    storage = storage_for(uri)
    return "public" if isinstance(storage, HdfsStorage) and storage.world_readable(uri) else "private"


def _publish_tensorboard(app: Any, app_id: str, attempt: int, report: Any, events: EventLog) -> bool:
    """Once the TensorBoard task has registered, add it as a page of the application's tracking UI
    (Skein's web UI, which YARN links as the tracking URL). Returns whether it is done."""
    import skein

    try:
        address = app.kv.get(f"attempt-{attempt}/address/{TENSORBOARD_TASK}/0")
        if address is None:
            return False
        app.ui.add_page(TENSORBOARD_TASK, f"http://{address.decode()}", link_name="TensorBoard")
    except skein.exceptions.ConnectionError:
        return False
    page = f"{report.tracking_url.rstrip('/')}/pages/{TENSORBOARD_TASK}" if report.tracking_url else ""
    events.emit("tensorboard_started", app_id=app_id, address=address.decode(), tracking_url=report.tracking_url,
                page=page)
    print(f"{app_id}: TensorBoard at http://{address.decode()} (tracking UI page {page})", file=sys.stderr)
    return True


def _shutdown(app: Any, status: str, diagnostics: str = "") -> None:
    """Ask the application master to finish; it may already have (Skein's AM stops by itself once
    every service is done), which is not an error: the tasks' result records decide the outcome."""
    import skein

    try:
        app.shutdown(status, diagnostics=diagnostics)
    except skein.exceptions.ConnectionError:
        pass


class YarnBackend:
    def __init__(self) -> None:
        import skein  # noqa: F401  (fail early with a clear ImportError)

    def skein_spec(self, spec: JobSpec, attempt: int, spec_file: Path, nodes: list[str] | None = None) -> Any:
        """The attempt's application; ``nodes``, when given, are the only hosts its tasks may run on."""
        import skein

        files = {"spec.json": skein.File(str(spec_file))}
        python = sys.executable
        env = {"PYTHONUNBUFFERED": "1"}
        if spec.python and spec.python.path:
            python = f"{spec.python.path}/bin/python"
        elif spec.python and spec.python.archive:
            source = spec.python.archive if "://" in spec.python.archive else upload_once(
                Path(spec.python.archive), "envs")
            files["pyenv"] = skein.File(source, type="archive", visibility=_cached_visibility(source))
            python = "./pyenv/bin/python"
        if spec.code:
            code = _code_archive(spec.code)
            files["code"] = skein.File(code, type="archive", visibility=_cached_visibility(code))
            env["PYTHONPATH"] = "./code"
        services = {}
        for task_type, task in spec.tasks.items():
            task_files = dict(files)
            task_files.update({name: skein.File(source) for name, source in task.files.items()})
            script = (f"index=${{SKEIN_CONTAINER_ID##*_}}\n"
                      f"exec {python} -m launcher.task --spec \"$(cat spec.json)\" --type {task_type} "
                      f"--index $index --attempt {attempt} "
                      f"--results-dir {history_dir()}/$SKEIN_APPLICATION_ID/tasks")
            services[task_type] = skein.Service(
                instances=task.instances, max_restarts=0, allow_failures=True,  # the client decides
                resources=skein.Resources(memory=task.memory, vcores=task.vcores, gpus=task.gpus),
                files=task_files, env={**env, **task.env}, script=script,
                **({"nodes": nodes, "relax_locality": False} if nodes else {}))
        return skein.ApplicationSpec(
            name=spec.name, queue=spec.queue, node_label=spec.node_label or "", tags=set(spec.tags) | {"glmix"},
            max_attempts=1, master=skein.Master(resources=skein.Resources(memory=AM_MEMORY_MB, vcores=1)),
            services=services)

    def _client(self, spec: JobSpec) -> Any:
        import skein

        if spec.kerberos:
            return skein.Client(principal=spec.kerberos.principal, keytab=spec.kerberos.keytab)
        return skein.Client()

    def submit(self, spec: JobSpec, on_status: StatusCallback | None = None) -> JobResult:
        result = JobResult("", "FAILED", 0)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp, self._client(spec) as client:
            spec_file = Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps(spec.to_dict()))
            events: EventLog | None = None
            failed_nodes: set[str] = set()

            def attempt(k: int) -> tuple[AttemptStatus, TaskOutcome | None]:
                nonlocal events
                app_id = client.submit(self.skein_spec(spec, k, spec_file, _nodes_avoiding(client, failed_nodes)))
                if events is None:
                    result.app_id = app_id
                    events = EventLog(f"{history_dir()}/{app_id}.jsonl")
                    events.emit("application_started", app_id=app_id, name=spec.name, backend="yarn",
                                tensorboard_log_dir=spec.tensorboard_log_dir)
                events.emit("attempt_started", app_id=app_id, attempt=k)
                outcome = self._watch(client, app_id, k, spec, started, events, on_status)
                for record in read_task_results(app_id).values():
                    events.emit("task_finished", app_id=app_id, **record)
                result.attempt_ids.append(app_id)
                if outcome[1] is not None and outcome[1].node:
                    failed_nodes.add(outcome[1].node)
                return outcome

            def restarted(k: int, reason: str) -> None:
                assert events is not None
                events.emit("attempt_restarted", app_id=result.attempt_ids[-1], attempt=k, reason=reason,
                            avoiding=sorted(failed_nodes))

            run_attempts(spec, result, attempt, restarted)
            if events is not None:
                events.emit("application_finished", app_id=result.app_id, final_status=result.final_status,
                            attempts=result.attempts, reason=result.reason,
                            seconds=round(time.monotonic() - started, 3))
        return result

    def _watch(self, client: Any, app_id: str, attempt: int, spec: JobSpec, started: float, events: EventLog,
               on_status: StatusCallback | None) -> tuple[AttemptStatus, TaskOutcome | None]:
        """Follow one attempt to its end; returns (status, failed task)."""
        import skein

        app = None
        submitted = time.monotonic()
        seen: dict[str, str] = {}
        tensorboard_pending = spec.tensorboard
        try:
            while True:
                report = client.application_report(app_id)
                state = str(report.state)
                if state in ("FINISHED", "FAILED", "KILLED"):
                    break
                if state == "RUNNING":
                    if app is None:
                        try:
                            app = client.connect(app_id, wait=False)
                        except skein.exceptions.ConnectionError:
                            app = None
                    if app is not None and tensorboard_pending:
                        tensorboard_pending = not _publish_tensorboard(app, app_id, attempt, report, events)
                    if app is not None:
                        outcome = self._check_containers(app, spec, seen, events, app_id, attempt, on_status,
                                                         submitted)
                        if outcome is not None:
                            return outcome
                if time.monotonic() - started > spec.timeouts.job:
                    client.kill_application(app_id)
                    return "job_timeout", TaskOutcome("job", None, f"job timeout of {spec.timeouts.job:.0f}s", "")
                time.sleep(POLL_S)
        except KeyboardInterrupt:
            client.kill_application(app_id)
            return interrupted()
        return self._outcome(app_id, spec, str(report.final_status), report.diagnostics or "")

    def _outcome(self, app_id: str, spec: JobSpec, final_status: str,
                 diagnostics: str) -> tuple[AttemptStatus, TaskOutcome | None]:
        """Decide from the tasks' own result records, which outlive the application: the task that
        failed first decides (the others failed because of it, e.g. a collective lost its peer, or
        were stopped), and a new attempt avoids its node."""
        results = read_task_results(app_id)
        failed = [r for r in results.values() if r["exit_code"] != 0 and spec.is_tracked(r["task"].split(":")[0])]
        if failed:
            first = min(failed, key=lambda r: r["finished"])
            outcome = TaskOutcome(first["task"], first["exit_code"], first["stderr_tail"],
                                  f"{first['container']} on {first['host']}", first["host"])
            return ("chief_failed" if first["task"].startswith("chief:") else "task_failed"), outcome
        expected = {f"{t}:{i}" for t, i in spec.instances() if spec.is_tracked(t)}
        if final_status == "SUCCEEDED" and expected <= set(results):
            return "SUCCEEDED", None
        missing = sorted(expected - set(results))
        return "task_lost", TaskOutcome(missing[0] if missing else "unknown", None,
                                        f"no result from {', '.join(missing)}; {diagnostics}", app_id)

    def _check_containers(self, app: Any, spec: JobSpec, seen: dict[str, str], events: EventLog, app_id: str,
                          attempt: int, on_status: StatusCallback | None,
                          submitted: float) -> tuple[AttemptStatus, TaskOutcome | None] | None:
        import skein

        try:
            containers = app.get_containers(states=list(skein.model.ContainerState))
        except skein.exceptions.ConnectionError:
            return None
        states = {c.id.replace("_", ":"): str(c.state) for c in containers}
        for c in containers:
            if seen.get(c.id) != str(c.state):
                seen[c.id] = str(c.state)
                events.emit("task_state", app_id=app_id, task=c.id, state=str(c.state),
                            container=c.yarn_container_id, node=c.yarn_node_http_address, exit_message=c.exit_message)
        if on_status:
            on_status(Status(app_id, attempt, states))
        for c in containers:
            if str(c.state) in ("FAILED", "KILLED") and spec.is_tracked(c.service_name):
                # stop the others at once: they would hang in collectives waiting for the dead task
                _shutdown(app, "FAILED", f"task {c.id} failed: {c.exit_message}")
                if str(PREEMPTED_EXIT) in (c.exit_message or ""):
                    return "preempted", TaskOutcome(c.id.replace("_", ":"), PREEMPTED_EXIT, "preempted by YARN",
                                                    f"{c.yarn_container_id} on {c.yarn_node_http_address}")
                return self._outcome(app_id, spec, "FAILED", c.exit_message or "")
        tracked = [c for c in containers if spec.is_tracked(c.service_name)]
        expected = sum(t.instances for name, t in spec.tasks.items() if spec.is_tracked(name))
        if len(tracked) == expected and all(str(c.state) == "SUCCEEDED" for c in tracked):
            _shutdown(app, "SUCCEEDED")
            return self._outcome(app_id, spec, "SUCCEEDED", "")
        waiting = [c for c in containers if str(c.state) in ("WAITING", "REQUESTED")]
        if waiting and time.monotonic() - submitted > spec.timeouts.allocation:
            _shutdown(app, "FAILED", "allocation timeout")
            return "allocation_timeout", TaskOutcome(
                waiting[0].id.replace("_", ":"), None,
                f"container not allocated within {spec.timeouts.allocation:.0f}s", "")
        return None


def _nodes_avoiding(client: Any, failed: set[str]) -> list[str] | None:
    """The running nodes other than ``failed``, or None (anywhere) when nothing failed or no other node is left."""
    if not failed:
        return None
    others = sorted(node.host for node in client.get_nodes(states=["RUNNING"]) if node.host not in failed)
    return others or None


def read_task_results(app_id: str, wait_s: float = 10) -> dict[str, dict[str, Any]]:
    """The result records tasks wrote (exit code, stderr tail, host), keyed by 'type:index'."""
    directory = f"{history_dir()}/{app_id}/tasks"
    storage = storage_for(directory)
    deadline = time.monotonic() + wait_s
    while not storage.exists(directory) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not storage.exists(directory):
        return {}
    records = [json.loads(storage.read_bytes(e.uri)) for e in storage.list(directory) if e.name.endswith(".json")]
    return {r["task"]: r for r in records}
