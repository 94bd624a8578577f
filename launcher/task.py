"""The task runtime, run in every container (or local process) before the user's command.

1. Reserve a port: bind a socket with SO_REUSEPORT and keep it bound (not listening) until the
   command exits, so nothing else can take the port; TensorFlow binds it too because we set
   TF_GRPC_REUSE_PORT. No window for a port race.
2. Register host:port in the key-value store under attempt-N/address/TYPE/INDEX.
3. Wait at the barrier until every task of the TensorFlow cluster has registered (registration
   timeout: exit code 75 with the missing tasks named).
4. Run the command with TF_CONFIG (cluster by type and index; an evaluator gets its own TF_CONFIG
   and stays out of everyone else's cluster) and GLMIX_TASK_TYPE / GLMIX_TASK_INDEX /
   GLMIX_NUM_<TYPE> / GLMIX_RUN_ID.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections import deque
from typing import Any

from launcher.kv import DirectoryStore, KeyValueStore, SkeinStore, wait_for
from launcher.spec import TENSORBOARD_TASK, JobSpec

REGISTRATION_TIMEOUT_EXIT = 75
OUTSIDE_CLUSTER = {"evaluator", "tensorboard"}
STDERR_TAIL: deque[str] = deque(maxlen=25)


def reserve_port(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def tf_config(spec: JobSpec, addresses: dict[str, str], task_type: str, index: int) -> dict[str, Any]:
    cluster: dict[str, list[str]] = {}
    for t, i in spec.instances():
        if t in OUTSIDE_CLUSTER:
            continue
        cluster.setdefault(t, []).append(addresses[f"{t}/{i}"])
    if task_type in OUTSIDE_CLUSTER:
        return {"cluster": {task_type: [addresses[f"{task_type}/{index}"]]}, "task": {"type": task_type,
                                                                                        "index": index}}
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def run_task(spec: JobSpec, task_type: str, index: int, attempt: int, store: KeyValueStore, run_id: str,
             host: str) -> int:
    sock = reserve_port(host)
    try:
        port = sock.getsockname()[1]
        prefix = f"attempt-{attempt}/address/"
        store.put(f"{prefix}{task_type}/{index}", f"{host}:{port}")
        needed = {f"{t}/{i}" for t, i in spec.instances() if t not in OUTSIDE_CLUSTER}
        needed.add(f"{task_type}/{index}")
        try:
            addresses = wait_for(store, prefix, needed, spec.timeouts.registration)
        except TimeoutError as exc:
            message = f"registration timeout after {spec.timeouts.registration:.0f}s: never registered: {exc}"
            print(message, file=sys.stderr, flush=True)
            STDERR_TAIL.append(message)
            return REGISTRATION_TIMEOUT_EXIT
        env = dict(os.environ)
        # `python` in a task's command is the task's environment (the shipped or configured one)
        env["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(sys.executable), env.get("PATH")]))
        env.update(spec.tasks[task_type].env)
        env.update({"TF_CONFIG": json.dumps(tf_config(spec, addresses, task_type, index)),
                    "GLMIX_TASK_HOST": host, "GLMIX_TASK_PORT": str(port),
                    "TF_GRPC_REUSE_PORT": "true", "GLMIX_TASK_TYPE": task_type, "GLMIX_TASK_INDEX": str(index),
                    "GLMIX_RUN_ID": f"{run_id}-attempt-{attempt}", "GLMIX_ATTEMPT": str(attempt)})
        for t, task in spec.tasks.items():
            env[f"GLMIX_NUM_{t.upper()}"] = str(task.instances)
        print(f"[{task_type}:{index}] attempt {attempt} starting at {host}:{port}", flush=True)
        if task_type == TENSORBOARD_TASK:
            sock.close()   # TensorBoard binds the port itself, without SO_REUSEPORT
        return run_command(spec.tasks[task_type].command, env)
    finally:
        sock.close()


def run_command(command: str, env: dict[str, str]) -> int:
    """Run the user's command, passing its stderr through while keeping the last lines for the report."""
    proc = subprocess.Popen(["bash", "-c", command], env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
        STDERR_TAIL.append(line.decode(errors="replace").rstrip("\n"))
    return proc.wait()


def peak_child_rss_mb() -> float:
    """Peak resident memory of the user's command (the largest process it waited for), in MB."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def write_result(results_dir: str, task_type: str, index: int, attempt: int, exit_code: int,
                 seconds: float, host: str) -> None:
    """The task's outcome where the client reads it even after the application is gone."""
    from glmix.io.storage import join, write_file_atomically

    record = {"task": f"{task_type}:{index}", "attempt": attempt, "exit_code": exit_code,
              "seconds": round(seconds, 3), "finished": round(time.time(), 3), "peak_rss_mb": peak_child_rss_mb(),
              "host": host,
              "container": os.environ.get("CONTAINER_ID", ""), "stderr_tail": "\n".join(STDERR_TAIL)}
    write_file_atomically(join(results_dir, f"{task_type}-{index}.json"), json.dumps(record).encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launcher.task")
    parser.add_argument("--spec", required=True, help="the validated spec as JSON")
    parser.add_argument("--type", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--kv-dir", help="local backend: the directory key-value store (else Skein's)")
    parser.add_argument("--run-id", default=os.environ.get("SKEIN_APPLICATION_ID", "local"))
    parser.add_argument("--results-dir", help="where to write the task's outcome (on YARN: under the app id)")
    args = parser.parse_args(argv)
    spec = JobSpec.from_dict(json.loads(args.spec))
    store: KeyValueStore = DirectoryStore(args.kv_dir) if args.kv_dir else SkeinStore()
    host = os.environ.get("NM_HOST", "127.0.0.1")   # on YARN, the NodeManager names the task's node
    started = time.monotonic()
    code = run_task(spec, args.type, args.index, args.attempt, store, args.run_id, host)
    if args.results_dir:
        write_result(args.results_dir, args.type, args.index, args.attempt, code, time.monotonic() - started, host)
    return code


if __name__ == "__main__":
    sys.exit(main())
