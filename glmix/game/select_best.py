"""Pick the best coordinate-descent step on the first evaluator and publish it as the GAME model.

    python -m glmix.game.select_best CONFIG.yaml

Reads every step's validation metrics (the flow's score stages, which evaluate), writes OUTPUT/summary.json
(each step: run, pass, coordinate, regularization, metrics; and which one is best) and publishes
the model as it stood right after the best step into OUTPUT/best/ (layout in glmix.model.game_model).
A step whose primary metric is undefined never wins.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, TextIO

from glmix.errors import GlmixError
from glmix.game.config import GameConfig, config_command
from glmix.game.plan import GamePlan, Step
from glmix.io.storage import join, storage_for, write_file_atomically
from glmix.model.game_model import publish_game_model


def step_rows(plan: GamePlan, steps: list[Step]) -> list[dict[str, Any]]:
    """Every step with its metrics (as written by its score node's evaluation, glmix.spark.evaluation)."""
    grid = plan.config.grid()
    rows = []
    for step in steps:
        path = join(step.metrics, "metrics.json")
        storage = storage_for(path)
        if not storage.exists(path):
            raise GlmixError(f"{path}: missing; the score node of {step.label} (run {step.run}) has not run")
        metrics = json.loads(storage.read_bytes(path))["metrics"]
        rows.append({"run": step.run, "pass": step.pass_index, "coordinate": step.coordinate,
                     "regularization": {n: {"l2": l2, "l1": l1} for n, (l2, l1) in grid[step.run].items()},
                     "metrics": metrics})
    return rows


def select_best(config: GameConfig) -> dict[str, Any]:
    plan = GamePlan(config)
    steps = plan.steps()
    rows = step_rows(plan, steps)
    metric, sign = config.primary_metric, (1 if config.higher_is_better() else -1)
    candidates = [i for i, r in enumerate(rows) if r["metrics"].get(metric) is not None
                  and math.isfinite(r["metrics"][metric])]
    if not candidates:
        raise GlmixError(f"no step has a defined {metric}; cannot choose a model")
    best = max(candidates, key=lambda i: (sign * rows[i]["metrics"][metric], -i))
    step = steps[best]
    metadata = {"name": config.name, "task": config.task, "selected_on": metric, **rows[best]}
    publish_game_model(plan.best, list(step.models), metadata)
    summary = {"name": config.name, "task": config.task, "primary_metric": metric, "best": best, "steps": rows,
               "best_model": plan.best}
    write_file_atomically(plan.summary, json.dumps(summary, indent=2).encode())
    return summary


def describe(summary: dict[str, Any]) -> str:
    best = summary["steps"][summary["best"]]
    return (f"best: run {best['run']} pass {best['pass']} after {best['coordinate']}: "
            f"{summary['primary_metric']} = {best['metrics'][summary['primary_metric']]:.4f} -> {summary['best_model']}")


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    return config_command("glmix.game.select_best", argv, lambda config: describe(select_best(config)), out, cwd)


if __name__ == "__main__":
    sys.exit(main())
