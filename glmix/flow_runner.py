"""Run a generated Azkaban project on this machine: same nodes, same commands, one process.

    glmix flow run PROJECT_DIR [--set spark.master=local[2]] [--restart]

Nodes run as soon as their dependencies succeeded, up to ``parallel`` at a time (as Azkaban runs
a flow's ready jobs concurrently), with the project directory as working directory. Commands are read from the ``.flow`` file and their ``${...}`` properties substituted (flow
config, then this machine's defaults, then ``--set``). To keep per-stage startup cheap, known
commands run in-process: ``spark-submit .../jobs/X.py ARGS`` calls ``jobs.X.run`` on one shared
SparkSession (built from the first Spark node's master and resources); ``python -m MODULE ARGS``
calls ``MODULE.main``. Anything else runs as a shell command. Concurrent Spark nodes share the
session (Spark schedules their jobs side by side); each node's output goes to its own log.

Per-node status, timing and log (``PROJECT/.glmix-run/logs/NODE.log``) are kept in
``PROJECT/.glmix-run/state.json``; a re-run skips every node that already succeeded with the same
command, so it resumes at the first unfinished stage. Failed nodes are retried as often as their
``retries`` config says.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from glmix.azkaban import Flow, Node, read_project
from glmix.errors import ConfigError, GlmixError

STATE_DIR = ".glmix-run"
PROPERTY = re.compile(r"\$\{([^}]+)\}")
DEFAULT_PARALLEL = 4


def local_properties() -> dict[str, str]:
    """Where this machine has glmix, its Python and the spark-avro jar."""
    from glmix.spark import AVRO_JAR, REPO

    return {"glmix.home": str(REPO), "glmix.python": sys.executable,
            "spark.submit": str(Path(sys.executable).parent / "spark-submit"), "spark.avro.jar": str(AVRO_JAR)}


def substitute(text: str, properties: dict[str, str], where: str) -> str:
    def value(match: re.Match) -> str:
        if match[1] not in properties:
            raise ConfigError(f"{where}: property ${{{match[1]}}} is not defined")
        return properties[match[1]]

    return PROPERTY.sub(value, text)


@dataclass
class NodeResult:
    name: str
    status: str          # succeeded | failed | skipped
    seconds: float
    attempts: int
    log: str
    error: str = ""


class _ThreadLog(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr while nodes run: what a node's thread prints goes to
    that node's log, anything else (the runner's own progress) to the real stream."""

    def __init__(self, fallback: TextIO) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def _target(self) -> TextIO:
        return getattr(self.local, "stream", None) or self.fallback

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._target().fileno()

    @contextlib.contextmanager
    def to(self, stream: TextIO) -> Iterator[None]:
        self.local.stream = stream
        try:
            yield
        finally:
            self.local.stream = None


@contextlib.contextmanager
def _output_per_thread() -> Iterator[tuple[_ThreadLog, _ThreadLog]]:
    stdout, stderr = _ThreadLog(sys.stdout), _ThreadLog(sys.stderr)
    sys.stdout, sys.stderr = stdout, stderr
    try:
        yield stdout, stderr
    finally:
        sys.stdout, sys.stderr = stdout.fallback, stderr.fallback


class LocalRunner:
    def __init__(self, project: Path, overrides: dict[str, str] | None = None,
                 console: Console | None = None, parallel: int = DEFAULT_PARALLEL,
                 quick_start: bool = True) -> None:
        """``quick_start``: start a local Spark JVM with the quick compiler (glmix.spark), as suits
        the small flows this runner is mostly given; pass False for large local inputs."""
        if parallel < 1:
            raise ConfigError(f"parallel must be at least 1, got {parallel}")
        self.project = project.resolve()
        self.parallel = parallel
        self.quick_start = quick_start
        self.flow: Flow = read_project(self.project)
        self.properties = {**self.flow.config, **local_properties(), **(overrides or {})}
        self.state_dir = self.project / STATE_DIR
        self.state_file = self.state_dir / "state.json"
        self.console = console or Console(stderr=True)
        self._spark = None
        self._owns_spark = False
        self._spark_lock = threading.Lock()
        self._logs: tuple[_ThreadLog, _ThreadLog] | None = None

    # ------------------------------------------------------------------ state
    def _load_state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def command(self, node: Node) -> str:
        return substitute(node.command, self.properties, f"node {node.name}")

    # ------------------------------------------------------------------ running
    def run(self, restart: bool = False) -> list[NodeResult]:
        """Run every node not already done; after a failure, start nothing new and let the running finish."""
        state = {} if restart else self._load_state()
        ordered = self.flow.order()
        position = {node.name: k for k, node in enumerate(ordered, 1)}
        results: dict[str, NodeResult] = {}
        succeeded: set[str] = set()
        running: dict[Future, Node] = {}
        digests: dict[str, str] = {}  # node -> hash of the command it ran, to know later runs may skip it
        failed = False
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        cwd = os.getcwd()
        self._spark = _callers_session()
        os.chdir(self.project)  # every node runs in the project directory, as under Azkaban
        try:
            with _output_per_thread() as logs, ThreadPoolExecutor(self.parallel) as pool:
                self._logs = logs
                while True:
                    for node in ordered:
                        if failed or len(running) >= self.parallel:
                            break
                        if node.name in results or node in running.values() or \
                                not all(d in succeeded for d in node.depends_on):
                            continue
                        command = self.command(node)
                        digest = hashlib.sha256(command.encode()).hexdigest()[:16]
                        log = self.state_dir / "logs" / f"{node.name}.log"
                        tag = f"[{position[node.name]}/{len(ordered)}] {node.name}"
                        previous = state.get(node.name, {})
                        if previous.get("status") == "succeeded" and previous.get("command") == digest:
                            results[node.name] = NodeResult(node.name, "skipped", 0.0, 0, str(log))
                            succeeded.add(node.name)
                            self.console.print(f"{tag} [dim]done earlier, skipped[/dim]", highlight=False)
                            continue
                        digests[node.name] = digest
                        running[pool.submit(self._run_with_retries, node, command, log, tag)] = node
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        node, result = running.pop(future), future.result()
                        results[node.name] = result
                        state[node.name] = {"status": result.status, "command": digests[node.name],
                                            "seconds": round(result.seconds, 3), "attempts": result.attempts,
                                            "log": result.log, "error": result.error}
                        self._save_state(state)
                        if result.status == "failed":
                            failed = True
                        else:
                            succeeded.add(node.name)
        finally:
            self._logs = None
            os.chdir(cwd)
            if self._owns_spark:
                self._spark.stop()
            self._spark, self._owns_spark = None, False
        return sorted(results.values(), key=lambda r: position[r.name])

    def _run_with_retries(self, node: Node, command: str, log: Path, tag: str) -> NodeResult:
        retries = int(node.config.get("retries", "0"))
        started = time.monotonic()
        error = ""
        for attempt in range(1, retries + 2):
            self.console.print(f"{tag} [cyan]running[/cyan]" + (f" (attempt {attempt})" if attempt > 1 else ""),
                               highlight=False)
            error = self._execute(command, log, append=attempt > 1)
            if not error:
                seconds = time.monotonic() - started
                self.console.print(f"{tag} [green]succeeded[/green] in {seconds:.1f}s", highlight=False)
                return NodeResult(node.name, "succeeded", seconds, attempt, str(log))
        seconds = time.monotonic() - started
        self.console.print(f"{tag} [red]failed[/red] after {seconds:.1f}s: {error}\n  log: {log}", highlight=False)
        return NodeResult(node.name, "failed", seconds, retries + 1, str(log), error)

    def _execute(self, command: str, log: Path, append: bool) -> str:
        """Run one command; returns '' on success, else a one-line reason (details in the log)."""
        argv = shlex.split(command)
        assert self._logs is not None, "nodes run inside LocalRunner.run"
        stdout, stderr = self._logs
        with open(log, "a" if append else "w") as out, stdout.to(out), stderr.to(out):
            print(f"$ {command}", flush=True)
            try:
                if argv[0].endswith("spark-submit"):
                    return self._spark_job(argv[1:])
                if len(argv) >= 3 and argv[1] == "-m":
                    code = _module_main(argv[2])(argv[3:])
                    return "" if code == 0 else f"{argv[2]} exited with {code}"
                code = subprocess.call(command, shell=True, stdout=out, stderr=out)
                return "" if code == 0 else f"exit code {code}"
            except GlmixError as exc:
                print(f"error: {exc}", flush=True)
                return str(exc)
            except Exception as exc:  # a stage's crash is the node's failure, never the runner's
                traceback.print_exc()
                return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def _spark_job(self, argv: list[str]) -> str:
        options = argparse.ArgumentParser(add_help=False)
        for flag in ("--master", "--deploy-mode", "--num-executors", "--executor-memory", "--jars"):
            options.add_argument(flag)
        options.add_argument("--conf", action="append", default=[])
        known, rest = options.parse_known_args(argv)
        script = next((a for a in rest if a.endswith(".py")), None)
        if script is None:
            return "spark-submit: no job script in the command"
        job_args = rest[rest.index(script) + 1:]
        module = importlib.import_module(f"jobs.{Path(script).stem}")
        args = module.build_parser().parse_args(job_args)
        report = module.run(self._session(known), args)
        print(json.dumps(report, indent=2, default=str), flush=True)
        return ""

    def _session(self, options: argparse.Namespace):
        """One session for every Spark node, made by the first Spark node to need it."""
        with self._spark_lock:
            if self._spark is None:
                from glmix.spark import session

                self._spark = session(options.master or "local[2]", f"glmix-flow-{self.flow.name}",
                                      executors=int(options.num_executors or 2),
                                      executor_memory=options.executor_memory or "1g",
                                      quick_start=self.quick_start)
                self._spark.sparkContext.setLogLevel("ERROR")  # stage logs carry the reports; warnings are noise
                self._owns_spark = True
            return self._spark


def _callers_session():
    """The caller's running SparkSession, if any: used and left running. Asked from the calling
    thread, since the JVM keeps the active session per thread."""
    if "pyspark.sql" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _module_main(name: str):
    """What ``python -m name`` would run: ``name.main``, or ``name.__main__.main`` for a package."""
    module = importlib.import_module(name)
    if not hasattr(module, "main"):
        module = importlib.import_module(f"{name}.__main__")
    return module.main


def print_timings(results: list[NodeResult], console: Console) -> None:
    from rich.table import Table

    table = Table(title="stages")
    for column in ("stage", "status", "seconds", "attempts"):
        table.add_column(column, justify="right" if column in ("seconds", "attempts") else "left")
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", str(r.attempts))
    console.print(table)
