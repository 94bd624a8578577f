"""Training from a notebook: the config's flow, run here by the runner `glmix train` uses, all at
once (``fit``) or one coordinate update at a time (``fit_coordinate``), with the runner's progress
lines shown in the notebook."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from glmix.api.model import GameModel
from glmix.errors import ConfigError
from glmix.flow.runner import NodeResult
from glmix.game.config import GameConfig
from glmix.game.flow_builder import step_node_name
from glmix.game.plan import GamePlan, Step
from glmix.game.training import run_flow, train_flow
from glmix.io.storage import join, storage_for


class GameEstimator:
    """``fit()`` trains every step of the config and returns the chosen model; ``fit_coordinate(name)``
    runs the update sequence's next step of ``name`` against the other coordinates' newest scores
    (the steps it depends on run first when they have not). Steps already done are not run again
    (the flow's run state), so a notebook can mix both and re-run cells."""

    def __init__(self, config: GameConfig, project: str | Path | None = None, console: Console | None = None) -> None:
        self.config = config
        self.plan = GamePlan(config)
        self.project = Path(project) if project else Path(tempfile.mkdtemp(prefix=f"glmix-{config.name}-"))
        self.console = console or Console()

    def fit(self) -> GameModel:
        train_flow(self.config, self.project, self.console)
        return GameModel.load(self.plan.best)

    def _steps(self) -> list[tuple[Step, str]]:
        runs = self.plan.runs()
        return [(step, step_node_name(step, len(runs))) for steps in runs for step in steps]

    def fit_coordinate(self, coordinate: str) -> dict[str, float | None]:
        """Train the next update of ``coordinate``, score and evaluate the model after it; its metrics."""
        if coordinate not in self.config.coordinates:
            raise ConfigError(f"no coordinate {coordinate!r}; the config's: {', '.join(self.config.coordinates)}")
        pending = [(s, name) for s, name in self._steps() if s.coordinate == coordinate and not _done(s)]
        if not pending:
            raise ConfigError(f"every update of {coordinate} in the config's passes has run; see steps()")
        step, name = pending[0]
        results: list[NodeResult] = run_flow(self.config, self.project, self.console, targets=[name])
        self.console.print(f"{step.label}: {sum(r.status == 'succeeded' for r in results)} stage(s) ran")
        return _metrics(step) or {}

    def steps(self) -> pd.DataFrame:
        """Every step of the plan, in order: run, pass, coordinate, whether it ran, and its metrics."""
        rows = []
        for step, _ in self._steps():
            rows.append({"run": step.run, "pass": step.pass_index, "coordinate": step.coordinate, "done": _done(step),
                         **(_metrics(step) or {})})
        return pd.DataFrame(rows)

    def current_model(self) -> GameModel:
        """The GAME model after the newest step that ran (not published: scores, coefficients, plots)."""
        done = [s for s, _ in self._steps() if _done(s)]
        if not done:
            raise ConfigError("no step has run yet: fit_coordinate(...) or fit()")
        return GameModel(list(done[-1].models), {"task": self.config.task, "step": done[-1].label})


def _done(step: Step) -> bool:
    return storage_for(step.metrics).exists(join(step.metrics, "metrics.json"))


def _metrics(step: Step) -> dict[str, Any] | None:
    path = join(step.metrics, "metrics.json")
    storage = storage_for(path)
    if not storage.exists(path):
        return None
    metrics: dict[str, Any] = json.loads(storage.read_bytes(path))["metrics"]
    return metrics
