"""Run tracking: each flow run and each of its grid points (a regularization run) with its parameters,
per-step validation metrics and artifact paths — recorded in the registry, the source of truth
(``REGISTRY/<model>/runs/<run id>.json``), and, when the config names a tracking server, logged to
MLflow (one run per flow run, a nested run per grid point; a metric's step is the coordinate-descent
step within the grid point), since many teams already look at their runs there.

    python -m glmix.registry.tracking CONFIG.yaml [RUN_DATE]   -> OUTPUT/tracking.json

The record is built from the flow's own files (``summary.json``, the data gate's decision when
there is one); MLflow is written through its client library (mlflow-skinny), with few retries so
that an unreachable server fails the stage in seconds, with one line, after the registry has the record.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from glmix.errors import GlmixError, run_command
from glmix.game.config import GameConfig, TrackingSettings
from glmix.game.plan import GamePlan
from glmix.io.storage import join, storage_for, write_file_atomically
from glmix.registry.metadata import digest
from glmix.registry.store import ModelRegistry


def _read_json(path: str) -> dict[str, Any] | None:
    storage = storage_for(path)
    return json.loads(storage.read_bytes(path)) if storage.exists(path) else None


def run_record(config: GameConfig, run_date: str | None = None) -> dict[str, Any]:
    """What the flow run did: every grid point's regularization, each step's metrics and outputs."""
    plan = GamePlan(config)
    summary = _read_json(plan.summary)
    if summary is None:
        raise GlmixError(f"{plan.summary}: missing; the flow of {config.name} has not finished (select-best)")
    points: dict[int, dict[str, Any]] = {}
    for index, (row, step) in enumerate(zip(summary["steps"], plan.steps(), strict=True)):
        point = points.setdefault(row["run"], {
            "grid_point": row["run"], "steps": [],
            "params": {f"{name}.{kind}": value for name, weights in row["regularization"].items()
                       for kind, value in weights.items()}})
        point["steps"].append({"step": index, "pass": row["pass"], "coordinate": row["coordinate"],
                               "metrics": row["metrics"], "model": step.output, "scores": step.scores})
    gate = _read_json(join(plan.data_gate, "data-gate.json")) if config.data_gate else None
    best = summary["steps"][summary["best"]]
    return {"run_id": f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}",
            "name": config.name, "task": config.task, "run_date": run_date, "config_digest": digest(config.to_dict()),
            "output": plan.root, "primary_metric": summary["primary_metric"],
            "best": {"grid_point": best["run"], "step": summary["best"], "metrics": best["metrics"],
                     "model": plan.best},
            "grid": list(points.values()), "data_gate": gate and {k: gate[k] for k in ("passed", "verdict")}}


def _key(name: str) -> str:
    """A metric or parameter name as MLflow accepts it (letters, digits, _ - . / : and spaces)."""
    return re.sub(r"[^\w.\- :/]", "_", name)


def log_to_mlflow(settings: TrackingSettings, experiment: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as an MLflow run with a nested run per grid point; their ids."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow)
    now = int(time.time() * 1000)
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        tags = {"glmix.run_id": record["run_id"], "glmix.output": record["output"],
                "glmix.config_digest": record["config_digest"], "glmix.run_date": str(record["run_date"]),
                "glmix.best_model": record["best"]["model"]}
        parent = client.create_run(experiment_id, run_name=record["run_id"], tags=tags).info.run_id
        best = [Metric(_key(k), v, now, 0) for k, v in record["best"]["metrics"].items() if v is not None]
        client.log_batch(parent, metrics=best, params=[Param("best_grid_point", str(record["best"]["grid_point"]))])
        children = []
        for point in record["grid"]:
            child = client.create_run(experiment_id, run_name=f"{record['run_id']} grid point {point['grid_point']}",
                                      tags={"mlflow.parentRunId": parent, "glmix.grid_point": str(point["grid_point"]),
                                            **{f"glmix.model.{s['step']}.{s['coordinate']}": s["model"]
                                               for s in point["steps"]}}).info.run_id
            metrics = [Metric(_key(k), v, now, s["step"]) for s in point["steps"]
                       for k, v in s["metrics"].items() if v is not None]
            client.log_batch(child, metrics=metrics, params=[Param(_key(k), str(v)) for k, v in point["params"].items()])
            client.set_terminated(child)
            children.append(child)
        client.set_terminated(parent)
    except (MlflowException, OSError) as exc:
        raise GlmixError(f"MLflow at {settings.mlflow}: {str(exc).splitlines()[0]}") from None
    return {"uri": settings.mlflow, "experiment_id": experiment_id, "run_id": parent, "grid_runs": children}


def track(config: GameConfig, run_date: str | None = None) -> str:
    assert config.registry is not None, "the flow tracks runs only with a registry"
    model = config.registry.model or config.name
    record = run_record(config, run_date)
    where = ModelRegistry(config.registry.root).record_run(model, record["run_id"], record)
    message = f"run {record['run_id']} of {model}: {len(record['grid'])} grid point(s) recorded in {where}"
    if config.tracking:
        record["mlflow"] = log_to_mlflow(config.tracking, config.tracking.experiment or model, record)
        message += f"; MLflow run {record['mlflow']['run_id']} at {config.tracking.mlflow}"
    write_file_atomically(GamePlan(config).tracking, json.dumps(record, indent=2).encode())
    return message


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m glmix.registry.tracking CONFIG.yaml [RUN_DATE]", file=out or sys.stderr)
        return 2
    return run_command(lambda: track(GameConfig.from_yaml((cwd or Path()) / args[0]), *args[1:]), out)


if __name__ == "__main__":
    sys.exit(main())
