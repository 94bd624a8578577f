"""The launcher CLI (also what Azkaban command jobs call).

    python -m launcher submit SPEC [--set key=value ...] [--backend yarn|local]
    python -m launcher status APP_ID
    python -m launcher logs APP_ID [--task worker:1]
    python -m launcher kill APP_ID
    python -m launcher history [APP_ID]

`submit` waits, shows live per-task status, and exits 0 only if the job SUCCEEDED.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from glmix.errors import GlmixError
from glmix.io.storage import storage_for
from launcher.backend import Backend, Status
from launcher.events import read_events
from launcher.spec import JobSpec


def status_line(status: Status) -> str:
    """One line of live progress: the application, the attempt, every task's state."""
    tasks = ", ".join(f"{task}={state}" for task, state in sorted(status.tasks.items()))
    return f"{status.app_id} attempt {status.attempt}: {tasks}"


def cmd_submit(args: argparse.Namespace, console: Console, cwd: Path) -> int:
    spec = JobSpec.from_yaml(cwd / args.spec, args.set or [])
    backend: Backend
    if args.backend == "local":
        from launcher.local import LocalBackend

        backend = LocalBackend(cwd / ".launcher")
    else:
        from launcher.yarn import YarnBackend

        backend = YarnBackend()
    shown: list[Status] = []

    def on_status(status: Status) -> None:
        if not shown or status != shown[-1]:
            shown[:] = [status]
            console.print(status_line(status), highlight=False)

    result = backend.submit(spec, on_status)
    console.print(f"{result.app_id}: {result.final_status} after {result.attempts} attempt(s)"
                  + (f" ({result.reason})" if result.reason else ""), highlight=False)
    if result.failed is not None:
        console.print(f"failed task {result.failed.task} (exit code {result.failed.exit_code}, {result.failed.where}):",
                      highlight=False)
        console.print(result.failed.stderr_tail, highlight=False, markup=False)
    return result.exit_code


def cmd_status(args: argparse.Namespace, console: Console, cwd: Path) -> int:
    return subprocess.call(["yarn", "application", "-status", args.app_id])


def cmd_logs(args: argparse.Namespace, console: Console, cwd: Path) -> int:
    command = ["yarn", "logs", "-applicationId", args.app_id]
    if args.task:
        service, _, index = args.task.partition(":")
        command += ["-log_files", f"{service}.log"]
        output = subprocess.run(command, capture_output=True, text=True).stdout
        blocks = output.split("Container: ")
        wanted = [b for b in blocks if f"{service}.log" in b]
        console.print("Container: ".join(wanted[int(index or 0):int(index or 0) + 1]) if wanted else output,
                      highlight=False, markup=False)
        return 0
    return subprocess.call(command)


def cmd_kill(args: argparse.Namespace, console: Console, cwd: Path) -> int:
    return subprocess.call(["yarn", "application", "-kill", args.app_id])


def cmd_history(args: argparse.Namespace, console: Console, cwd: Path) -> int:
    from launcher.yarn import history_dir

    root = history_dir()
    storage = storage_for(root)
    if args.app_id:
        for event in read_events(f"{root}/{args.app_id}.jsonl"):
            console.print(event, highlight=False, markup=False)
        return 0
    for entry in storage.list(root) if storage.exists(root) else []:
        events = read_events(entry.uri)
        finished: dict[str, Any] = next((e for e in reversed(events) if e["event"] == "application_finished"), {})
        console.print(f"{entry.name.removesuffix('.jsonl')}  {finished.get('final_status', 'RUNNING'):10s} "
                      f"attempts={finished.get('attempts', '-')}  seconds={finished.get('seconds', '-')}",
                      highlight=False, markup=False)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    """``out``: where to print (default stderr); ``cwd``: where a relative spec path and the local
    backend's run directories are (default the working directory). A flow runner passes both."""
    parser = argparse.ArgumentParser(prog="launcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit")
    submit.add_argument("spec")
    submit.add_argument("--set", action="append", metavar="KEY=VALUE")
    submit.add_argument("--backend", choices=["yarn", "local"], default="yarn")
    submit.set_defaults(func=cmd_submit)
    for name, func in (("status", cmd_status), ("kill", cmd_kill)):
        p = sub.add_parser(name)
        p.add_argument("app_id")
        p.set_defaults(func=func)
    logs = sub.add_parser("logs")
    logs.add_argument("app_id")
    logs.add_argument("--task", help="TYPE:INDEX, e.g. worker:1")
    logs.set_defaults(func=cmd_logs)
    history = sub.add_parser("history")
    history.add_argument("app_id", nargs="?")
    history.set_defaults(func=cmd_history)
    args = parser.parse_args(argv)
    console = Console(file=out, soft_wrap=True) if out is not None else Console(stderr=True)
    try:
        return int(args.func(args, console, cwd or Path()))
    except GlmixError as exc:
        console.print(f"error: {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
