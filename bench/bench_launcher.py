"""Submit-to-TF_CONFIG latency of the launcher: two workers on the YARN dev cluster vs local processes.

Latency = from the client's submit call until the last worker's command starts with TF_CONFIG set
(every task registered, barrier passed). Each task's command writes the time it started to a file
on local disk (the single-node cluster's containers share it). Three runs per backend; the
cluster is started if it is not running (and stopped again afterwards).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dev_cluster import running_cluster
from bench.report import print_table
from bench.sizes import size
from launcher.backend import Backend
from launcher.local import LocalBackend
from launcher.spec import JobSpec

RUNS = size(3, 1)


def latency(backend: Backend, marks: Path) -> float:
    command = f"date +%s.%N > {marks}/$GLMIX_TASK_TYPE-$GLMIX_TASK_INDEX"
    spec = JobSpec.from_dict({"name": "glmix-bench-latency", "tasks": {"worker": {
        "instances": 2, "memory": 512, "command": command}}})
    started = time.time()
    result = backend.submit(spec)
    assert result.final_status == "SUCCEEDED", result.failed
    return max(float(p.read_text()) for p in marks.iterdir()) - started


def run() -> None:
    with running_cluster():
        from launcher.yarn import YarnBackend

        rows: list[list[Any]] = []
        results = {}
        for name, backend in (("local processes", LocalBackend(tempfile.mkdtemp())), ("YARN (Skein)", YarnBackend())):
            samples = []
            for _ in range(RUNS):
                with tempfile.TemporaryDirectory() as marks:
                    samples.append(latency(backend, Path(marks)))
            results[name] = statistics.median(samples)
            rows.append([name, results[name], min(samples), max(samples)])
        for row in rows:
            row.append(row[1] - results["local processes"])
        print_table(f"submit-to-TF_CONFIG latency, 2 workers (seconds; median of {RUNS})",
                    ["backend", "median", "min", "max", "overhead vs local"], rows)
