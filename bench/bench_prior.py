"""``l2: auto`` (issue 24 item 1): random-effect prior variances learned in one run, against a grid.

1. Synthetic worlds with known prior variances (per-entity intercepts and slopes drawn from them,
   a logistic, Poisson or linear response, few or many rows per entity), solved in one process by
   the product's own functions: the learned variances next to the true ones, and the validation
   metric (AUC; RMSE for linear; mean Poisson deviance) of ``l2: auto`` against every point of a
   5 x 5 grid of (intercept, slope) weights centred on the truth (1/9x to 9x). Goals: variances
   within 10% where the data identify them, the metric no worse than the grid's best minus 0.002.
2. The MovieLens-shaped demo data through the GAME flow (fixed effect + per-user + per-movie, 2
   passes, local[2]): both random effects with ``l2: auto`` against the config's weights (the
   world's true precisions, set by hand) and a grid over the two random effects' slope weights
   (GLMIX_BENCH_PRIOR_GRID points per axis, default 5: 25 runs; the intercepts at their true
   weight, which favours the grid).

    make bench BENCH=prior
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import print_table, run_flow
from bench.sizes import SMOKE, size
from glmix.data.synthetic import generate, movielens_spec
from glmix.game.config import GameConfig
from glmix.game.demo import demo_config
from glmix.game.flow_builder import build_project
from glmix.glm.batched_newton import EntityProblem, SolverSettings, solve_entities
from glmix.glm.metrics import auc
from glmix.settings import Task
from glmix.train.prior_variance import LearnedPrior, learn_prior_variances
from glmix.train.random_effect import posteriors

D = 6               # an intercept and 5 slopes per entity
VALIDATION_ROWS = 10
GRID = (1 / 9, 1 / 3, 1.0, 3.0, 9.0)


@dataclass(frozen=True)
class World:
    task: Task
    rows: tuple[int, int]
    intercept_variance: float
    slope_variance: float
    noise_sd: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.task} {self.rows[0]}-{self.rows[1]} rows"


WORLDS = [World("logistic", (5, 40), 1.0, 0.09), World("logistic", (50, 150), 1.0, 0.09),
          World("logistic", (20, 60), 0.25, 0.01), World("poisson", (10, 40), 0.5, 0.04),
          World("linear", (5, 40), 1.0, 0.09, noise_sd=2.0)]


def draw(world: World, entities: int, seed: int) -> tuple[list[EntityProblem], list[tuple[np.ndarray, np.ndarray]]]:
    """Each entity's training problem and its validation rows (x, y)."""
    rng = np.random.default_rng(seed)
    problems, validation = [], []
    for e in range(entities):
        n = int(rng.integers(*world.rows)) + VALIDATION_ROWS
        x = np.hstack([np.ones((n, 1)), rng.normal(size=(n, D - 1))])
        b = np.concatenate([[rng.normal(0, math.sqrt(world.intercept_variance))],
                            rng.normal(0, math.sqrt(world.slope_variance), D - 1)])
        m = x @ b
        if world.task == "logistic":
            y = (rng.random(n) < 1 / (1 + np.exp(-m))).astype(float)
        elif world.task == "poisson":
            y = rng.poisson(np.exp(m)).astype(float)
        else:
            y = m + rng.normal(0, world.noise_sd, n)
        k = n - VALIDATION_ROWS
        problems.append(EntityProblem(f"e{e}", x[:k], y[:k], np.ones(k), np.zeros(k), np.ones(D), np.zeros(D),
                                      np.zeros(D)))
        validation.append((x[k:], y[k:]))
    return problems, validation


def with_weights(problems: list[EntityProblem], intercept_l2: float, l2: float) -> list[EntityProblem]:
    for p in problems:
        p.l2 = np.where(np.arange(D) == 0, intercept_l2, l2)
    return problems


def metric(task: Task, problems: list[EntityProblem], validation: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Validation AUC (logistic), RMSE (linear) or mean Poisson deviance of the solved entities."""
    solutions = solve_entities(problems, SolverSettings(task=task))
    m = np.concatenate([x @ s.coefficients for (x, _), s in zip(validation, solutions, strict=True)])
    y = np.concatenate([y for _, y in validation])
    if task == "logistic":
        return auc(y, m)
    if task == "linear":
        return float(np.sqrt(np.mean((y - m) ** 2)))
    mu = np.exp(m)
    return float(np.mean(2 * (np.where(y > 0, y * np.log(np.maximum(y, 1e-300) / mu), 0.0) - (y - mu))))


def learn(world: World, problems: list[EntityProblem]) -> LearnedPrior:
    intercepts = [np.arange(D) == 0] * len(problems)
    settings = SolverSettings(task=world.task)
    return learn_prior_variances(
        {"intercept": 1.0, "slopes": 1.0},
        lambda v: posteriors(with_weights(problems, 1 / v["intercept"], 1 / v["slopes"]), intercepts, settings),
        world.task == "linear", 30, 1e-3)


def worlds() -> None:
    entities = size(2000, 150, "GLMIX_BENCH_PRIOR_ENTITIES")
    rows: list[list[Any]] = []
    for seed, world in enumerate(WORLDS):
        problems, validation = draw(world, entities, seed)
        started = time.monotonic()
        learned = learn(world, problems)
        v = learned.variances
        ours = metric(world.task, with_weights(problems, 1 / v["intercept"], 1 / v["slopes"]), validation)
        auto_seconds = time.monotonic() - started
        started = time.monotonic()
        grid = [metric(world.task, with_weights(problems, 1 / (world.intercept_variance * a),
                                                1 / (world.slope_variance * b)), validation)
                for a in GRID for b in GRID]
        grid_seconds = time.monotonic() - started
        higher = world.task == "logistic"
        best = max(grid) if higher else min(grid)
        gain = ours - best if higher else best - ours      # > 0: auto better than the grid's best
        scale = learned.dispersion
        rows.append([world.name, entities, f"{world.intercept_variance:.3g} / {v['intercept'] * scale:.3g}",
                     f"{world.slope_variance:.3g} / {v['slopes'] * scale:.3g}",
                     f"{(v['intercept'] * scale / world.intercept_variance - 1):+.1%} / "
                     f"{(v['slopes'] * scale / world.slope_variance - 1):+.1%}",
                     {"logistic": "AUC", "linear": "RMSE", "poisson": "deviance"}[world.task],
                     f"{ours:.4f}", f"{best:.4f}", f"{gain:+.4f}", len(learned.history) + 1,
                     f"{auto_seconds:.1f} / {grid_seconds:.1f}"])
    print_table("l2: auto against a 5 x 5 grid centred on the true weights (one process; a solve = every entity once)",
                ["world", "entities", "intercept var true / learned", "slope var true / learned", "error",
                 "metric", "auto", "grid best", "auto - best", "solves (grid 25)", "seconds auto / grid"], rows)


def _variant(base: GameConfig, root: Path, name: str, coordinates: dict[str, dict[str, Any]]) -> GameConfig:
    data = base.to_dict()
    for coordinate, changes in coordinates.items():
        data["coordinates"][coordinate].update(changes)
    data["output"] = str(root / name / "game")
    return GameConfig.from_dict(data)


def game_flow() -> None:
    with tempfile.TemporaryDirectory(prefix="glmix-bench-prior-") as tmp:
        root = Path(tmp)
        generate(movielens_spec(rows=100_000, seed=0), str(root / "data"), processes=os.cpu_count() or 1)
        base = demo_config(root, passes=2)
        weights = {name: c.l2 for name, c in base.random_effects().items() if isinstance(c.l2, float)}
        points = size(5, 5, "GLMIX_BENCH_PRIOR_GRID")
        factors = GRID if points == 5 else GRID[:: max(1, len(GRID) // points)][:points]
        variants: list[tuple[str, dict[str, dict[str, Any]], int]] = [
            ("auto", {n: {"l2": "auto", "intercept_l2": "auto"} for n in weights}, 1), ("set by hand", {}, 1),
            (f"grid {points}x{points}", {n: {"l2": [w * f for f in factors]} for n, w in weights.items()},
             points * points)]
        rows: list[list[Any]] = []
        for name, changes, runs in variants:
            key = name.split()[0]
            config = _variant(base, root, key, changes)
            run = run_flow(build_project(config, root / key), Path(config.output))
            chosen, seconds = run.summary["steps"][run.summary["best"]], run.seconds
            rows.append([name, runs, f"{chosen['metrics']['AUC']:.4f}", f"{seconds:.0f}",
                         _learned(root / key / "game" / "best") if key == "auto" else "-"])
        print_table("MovieLens-shaped data through the GAME flow (global + per-user + per-movie, local[2]): "
                    "validation AUC of the chosen run", ["weights", "runs", "AUC", "flow s", "learned variances"], rows)


def _learned(best: Path) -> str:
    shown = []
    for report in sorted(best.glob("random-effect/*/_report.json")):
        learned = json.loads(report.read_text()).get("learned_prior") or {}
        shown.append(f"{report.parent.name}: " + ", ".join(f"{k} {v:.3g}" for k, v in learned.get("variances", {}).items()))
    return "; ".join(shown)


def run() -> None:
    worlds()
    if not SMOKE:    # a flow with l2: auto runs in make test already (tests/test_tracking.py)
        game_flow()
