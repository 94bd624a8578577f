"""Run a generated Azkaban project on this machine: same nodes, same commands, one process.

    glmix flow run PROJECT_DIR [--set spark.master=local[2]] [--restart]

Nodes run as soon as their dependencies succeeded, up to ``parallel`` at a time (as Azkaban runs
a flow's ready jobs concurrently), in the project directory (Azkaban's working directory for a
job). Commands are read from the ``.flow`` file and their ``${...}`` properties substituted (flow
config, then this machine's defaults, then ``--set``). To keep per-stage startup cheap, known
commands run in-process: ``spark-submit .../jobs/X.py ARGS`` calls ``jobs.X.run`` with the job's
typed arguments (relative paths anchored at the project directory) on one shared SparkSession
(built from the first Spark node's master and resources); ``python -m MODULE ARGS`` calls
``MODULE.main(ARGS, out=LOG, cwd=PROJECT)`` when that main takes both. Anything else runs as a
shell command in the project directory. Every node writes to its own log, given as a parameter:
nothing swaps the process's streams or working directory, so nodes can run side by side.

``--literal`` runs every node as Azkaban's command job type does instead: the command, split into
arguments, as a process of its own (a fresh ``spark-submit`` per Spark stage). That is how a
shipped project (``glmix flow build --ship``) is tested: its Spark drivers and executors and its
launcher tasks run in YARN containers with the shipped environment and code.

Per-node status and timing are kept with the flow's output (the flow's ``glmix.state`` directory,
see glmix.flow.run_state; ``PROJECT/.glmix-run/`` for flows that name none), logs in
``PROJECT/.glmix-run/logs/NODE.log``. A re-run skips every node whose earlier run still stands
(same command, same inputs, outputs still published), so it resumes at the first unfinished
stage, from any machine. One run at a time per state directory: a run holds a lease there
(glmix.flow.lease) and a second one waits up to ``lease_wait`` seconds, then refuses. Failed nodes
are retried as often as their ``retries`` config says.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape

from glmix.errors import ConfigError, GlmixError
from glmix.flow.azkaban import Flow, Node, read_project
from glmix.flow.lease import Lease
from glmix.flow.run_state import NodeFacts, RunState, data_fingerprint, reason_to_run

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STATE_DIR = ".glmix-run"
PROPERTY = re.compile(r"\$\{([^}]+)\}")
DEFAULT_PARALLEL = 4


def local_properties() -> dict[str, str]:
    """Where this machine has glmix, its Python and the spark-avro jar; the flow's start date, as
    Azkaban sets it."""
    from glmix.spark.session import AVRO_JAR, REPO

    today = datetime.date.today()
    return {"glmix.home": str(REPO), "glmix.python": sys.executable,
            "spark.submit": str(Path(sys.executable).parent / "spark-submit"), "spark.avro.jar": str(AVRO_JAR),
            "azkaban.flow.start.year": f"{today:%Y}", "azkaban.flow.start.month": f"{today:%m}",
            "azkaban.flow.start.day": f"{today:%d}"}


def substitute(text: str, properties: dict[str, str], where: str, depth: int = 0) -> str:
    """``${name}`` replaced by the property, whose value may itself hold ``${...}`` (as Azkaban resolves)."""
    def value(match: re.Match[str]) -> str:
        if match[1] not in properties:
            raise ConfigError(f"{where}: property ${{{match[1]}}} is not defined")
        if depth > 10:
            raise ConfigError(f"{where}: property ${{{match[1]}}} refers to itself")
        return substitute(properties[match[1]], properties, where, depth + 1)

    return PROPERTY.sub(value, text)


@dataclass
class NodeResult:
    name: str
    status: str          # succeeded | failed | skipped
    seconds: float
    attempts: int
    log: str
    error: str = ""


class LocalRunner:
    def __init__(self, project: Path, overrides: dict[str, str] | None = None,
                 console: Console | None = None, parallel: int = DEFAULT_PARALLEL,
                 quick_start: bool = True, literal: bool = False, lease_wait: float = 0.0) -> None:
        """``quick_start``: start a local Spark JVM with the quick compiler (glmix.spark.session), as suits
        the small flows this runner is mostly given; pass False for large local inputs. ``literal``:
        run every node's command as a process of its own, as Azkaban's command job type does."""
        if parallel < 1:
            raise ConfigError(f"parallel must be at least 1, got {parallel}")
        self.project = project.resolve()
        self.parallel = parallel
        self.quick_start = quick_start
        self.literal = literal
        self.flow: Flow = read_project(self.project)
        self.properties = {**self.flow.config, **local_properties(), **(overrides or {})}
        self.state_dir = self.project / STATE_DIR
        home = self.flow.config.get("glmix.state")
        self.run_state = RunState(substitute(home, self.properties, "flow config glmix.state") if home
                                  else str(self.state_dir))
        self.lease_wait = lease_wait
        self.console = console or Console(stderr=True)
        self._spark: SparkSession | None = None
        self._owns_spark = False
        self._spark_lock = threading.Lock()

    def command(self, node: Node) -> str:
        return substitute(node.command, self.properties, f"node {node.name}")

    def facts(self, node: Node, command: str, state: dict[str, Any], fingerprints: dict[str, str]) -> NodeFacts:
        """The node's command digest, inputs (its dependencies' runs, its data's listings) and outputs.
        ``fingerprints``: the data inputs listed so far in this run (several stages read the same data)."""
        def declared(key: str) -> list[str]:
            return shlex.split(substitute(node.config.get(key, ""), self.properties, f"node {node.name} {key}"))

        inputs = {f"node:{d}": str(state.get(d, {}).get("finished", "")) for d in node.depends_on}
        for path in declared("glmix.inputs"):
            if path not in fingerprints:   # a relative path is the project's file (its config.yaml)
                fingerprints[path] = data_fingerprint(path if "://" in path or path.startswith("/")
                                                      else str(self.project / path))
            inputs[path] = fingerprints[path]
        return NodeFacts(hashlib.sha256(command.encode()).hexdigest()[:16], inputs, tuple(declared("glmix.outputs")))

    # ------------------------------------------------------------------ running
    def run(self, restart: bool = False, targets: Collection[str] = ()) -> list[NodeResult]:
        """Run every node not already done (with ``targets``: those nodes and what they depend on);
        after a failure, start nothing new and let the running finish."""
        lease = Lease(self.run_state.directory, f"flow {self.flow.name}")
        lease.acquire(self.lease_wait, say=lambda message: self.console.print(message, highlight=False, markup=False))
        try:
            return self._run(restart, self._needed(targets))
        finally:
            lease.release()

    def _needed(self, targets: Collection[str]) -> set[str]:
        """The targets and every node they depend on, directly or not (all nodes without targets)."""
        nodes = {n.name: n for n in self.flow.nodes}
        unknown = sorted(set(targets) - set(nodes))
        if unknown:
            raise ConfigError(f"flow {self.flow.name} has no node {unknown[0]}")
        needed: set[str] = set()
        pending = list(targets or nodes)
        while pending:
            name = pending.pop()
            if name not in needed:
                needed.add(name)
                pending.extend(nodes[name].depends_on)
        return needed

    def _run(self, restart: bool, needed: set[str]) -> list[NodeResult]:
        state = {} if restart else self.run_state.load()
        ordered = [node for node in self.flow.order() if node.name in needed]
        position = {node.name: k for k, node in enumerate(ordered, 1)}
        results: dict[str, NodeResult] = {}
        succeeded: set[str] = set()
        running: dict[Future[NodeResult], Node] = {}
        facts: dict[str, NodeFacts] = {}  # what each node ran from, to know whether later runs may skip it
        fingerprints: dict[str, str] = {}
        failed = False
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._spark = _callers_session()
        try:
            with ThreadPoolExecutor(self.parallel) as pool:
                while True:
                    for node in ordered:
                        if failed or len(running) >= self.parallel:
                            break
                        if node.name in results or node in running.values() or \
                                not all(d in succeeded for d in node.depends_on):
                            continue
                        command = self.command(node)
                        log = self.state_dir / "logs" / f"{node.name}.log"
                        tag = f"[{position[node.name]}/{len(ordered)}] {node.name}"
                        previous = state.get(node.name, {})
                        facts[node.name] = known = self.facts(node, command, state, fingerprints)
                        why = reason_to_run(previous, known)
                        if why is None:
                            results[node.name] = NodeResult(node.name, "skipped", 0.0, 0, str(log))
                            succeeded.add(node.name)
                            self.console.print(f"{tag} [dim]done earlier, skipped[/dim]", highlight=False)
                            continue
                        if previous:
                            self.console.print(f"{tag} [dim]runs again: {escape(why)}[/dim]", highlight=False)
                        running[pool.submit(self._run_with_retries, node, command, log, tag)] = node
                    if not running:
                        break
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        node, result = running.pop(future), future.result()
                        results[node.name] = result
                        state[node.name] = {"status": result.status, **facts[node.name].to_dict(),
                                            "finished": time.time(), "seconds": round(result.seconds, 3),
                                            "attempts": result.attempts, "log": result.log, "error": result.error}
                        self.run_state.save(state)
                        if result.status == "failed":
                            failed = True
                        else:
                            succeeded.add(node.name)
        finally:
            if self._owns_spark and self._spark is not None:
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
            error = self._execute(node.name, command, log, append=attempt > 1)
            if not error:
                seconds = time.monotonic() - started
                self.console.print(f"{tag} [green]succeeded[/green] in {seconds:.1f}s", highlight=False)
                return NodeResult(node.name, "succeeded", seconds, attempt, str(log))
        seconds = time.monotonic() - started
        self.console.print(f"{tag} [red]failed[/red] after {seconds:.1f}s: {error}\n  log: {log}", highlight=False)
        return NodeResult(node.name, "failed", seconds, retries + 1, str(log), error)

    def _execute(self, name: str, command: str, log: Path, append: bool) -> str:
        """Run one command in the project directory, as Azkaban runs a job in its working directory;
        returns '' on success, else a one-line reason (details in the log)."""
        argv = shlex.split(command)
        with open(log, "a" if append else "w") as out:
            print(f"$ {command}", file=out, flush=True)
            if self.literal:
                return self._subprocess(argv, out, log)
            try:
                if argv[0].endswith("spark-submit"):
                    return self._spark_job(name, argv[1:], out)
                main = _module_main(argv[2]) if len(argv) >= 3 and argv[1] == "-m" else None
                if main is not None and _runs_in_flow(main):
                    code = main(argv[3:], out=out, cwd=self.project)
                    return "" if code == 0 else f"{argv[2]} exited with {code}"
                code = subprocess.call(command, shell=True, cwd=self.project, stdout=out, stderr=out)
                return "" if code == 0 else f"exit code {code}"
            except GlmixError as exc:
                print(f"error: {exc}", file=out, flush=True)
                return str(exc)
            except Exception as exc:  # a stage's crash is the node's failure, never the runner's
                traceback.print_exc(file=out)
                return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def _subprocess(self, argv: list[str], out: TextIO, log: Path) -> str:
        """The command as its own process (no shell: Azkaban splits a command into arguments and runs
        it), in the project directory; its reason to fail is the last ``error:`` line it printed."""
        env = {**os.environ, "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
        try:
            code = subprocess.call(argv, cwd=self.project, stdout=out, stderr=out, env=env)
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror}"
        return "" if code == 0 else failure_reason(log, code)

    def _spark_job(self, name: str, argv: list[str], out: TextIO) -> str:
        known, rest = submit_options(argv)
        script = next((a for a in rest if a.endswith(".py")), None)
        if script is None:
            return "spark-submit: no job script in the command"
        module = importlib.import_module(f"jobs.{Path(script).stem}")
        args = module.ARGS.from_argv(rest[rest.index(script) + 1:]).resolved(self.project)
        spark = self._session(known)
        # Spark's UI and event log then say which node each Spark job belongs to (the thread's jobs)
        spark.sparkContext.setJobGroup(name, f"{self.flow.name}: {name}")
        report = module.run(spark, args)
        print(json.dumps(report, indent=2, default=str), file=out, flush=True)
        return ""

    def _session(self, options: argparse.Namespace) -> SparkSession:
        """One session for every Spark node, made by the first Spark node to need it."""
        with self._spark_lock:
            if self._spark is None:
                from glmix.spark.session import session

                self._spark = spark = session(app_name=f"glmix-flow-{self.flow.name}", quick_start=self.quick_start,
                                              **session_settings(options))
                spark.sparkContext.setLogLevel("ERROR")  # stage logs carry the reports; warnings are noise
                self._owns_spark = True
            return self._spark


def submit_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """A spark-submit command's own options, and the rest (the job script and its arguments)."""
    options = argparse.ArgumentParser(add_help=False)
    for flag in ("--master", "--deploy-mode", "--driver-memory", "--num-executors", "--executor-memory", "--jars"):
        options.add_argument(flag)
    options.add_argument("--conf", action="append", default=[])
    return options.parse_known_args(argv)


def session_settings(options: argparse.Namespace) -> dict[str, Any]:
    """The in-process session's settings from a node's spark-submit options: its master, executors
    and memory (the driver's too: on local[N] the driver does all the work)."""
    driver = {"spark.driver.memory": options.driver_memory} if options.driver_memory else {}
    return {"master": options.master or "local[2]", "executors": int(options.num_executors or 2),
            "executor_memory": options.executor_memory or "1g", "extra": driver}


def failure_reason(log: Path, code: int) -> str:
    """The last ``error: ...`` line a stage printed (glmix stages print their one-line reason so);
    for a Spark driver that ran in a YARN container, the line is looked up in the application's
    logs and added to the node's log."""
    def last_error(text: str) -> str | None:
        lines = [line for line in text.splitlines() if line.startswith("error: ")]
        return lines[-1].removeprefix("error: ").strip() if lines else None

    text = log.read_text(errors="replace")
    reason = last_error(text)
    apps = re.findall(r"application_\d+_\d+", text)
    if reason is None and apps and shutil.which("yarn"):
        logs = subprocess.run(["yarn", "logs", "-applicationId", apps[-1], "-log_files", "stderr"],
                              capture_output=True, text=True).stdout
        with open(log, "a") as out:
            print(f"--- stderr of {apps[-1]} (yarn logs) ---\n{logs}", file=out)
        reason = last_error(logs)
    return reason or f"exit code {code}"


def _callers_session() -> SparkSession | None:
    """The caller's running SparkSession, if any: used and left running. Asked from the calling
    thread, since the JVM keeps the active session per thread."""
    if "pyspark.sql" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _module_main(name: str) -> Callable[..., int] | None:
    """What ``python -m name`` would run: ``name.main``, or ``name.__main__.main`` for a package
    (None for a module glmix cannot import, which then runs as a command)."""
    try:
        module = importlib.import_module(name)
        if not hasattr(module, "main"):
            module = importlib.import_module(f"{name}.__main__")
    except ImportError:
        return None
    return getattr(module, "main", None)


def _runs_in_flow(main: Callable[..., int]) -> bool:
    """A module's main runs in-process when it takes where to write (``out``) and the working
    directory (``cwd``) as parameters: then nodes running side by side cannot mix their output
    or change each other's directory. Any other module runs as a subprocess."""
    parameters = inspect.signature(main).parameters
    return "out" in parameters and "cwd" in parameters


def print_timings(results: list[NodeResult], console: Console) -> None:
    from rich.table import Table

    table = Table(title="stages")
    for column in ("stage", "status", "seconds", "attempts"):
        table.add_column(column, justify="right" if column in ("seconds", "attempts") else "left")
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", str(r.attempts))
    console.print(table)
