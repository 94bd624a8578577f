"""How close to the ground truth can any estimator get on a world of the demo's shape?

The *oracle bound*: each entity's random effect fitted (Newton, to convergence) by the MAP of its
own training rows under the world's true Gaussian prior (l2 = 1 / std^2 per coefficient), with the
true global model and the other random effect's true scores as offsets. No estimator of the same
data does better on average, so its validation AUC bounds what the GAME pipeline can reach, and its
gap to the truth's AUC is the part of the gap that is the world's, not the pipeline's.

Prints, per world: the truth's AUC, the true global model alone, the oracle bound, and the gap.
The first row is the demo's world (`movielens_spec`); the second, a world with wide tastes, shows
why the demo's world was chosen: there even the oracle stays ~0.06 below the truth.
"""

from __future__ import annotations

import numpy as np

from bench.report import print_table
from bench.sizes import size
from glmix.data.synthetic import SyntheticSpec, World, movielens_spec
from glmix.glm.metrics import auc

NEWTON_STEPS = 50
ROWS = size(100_000, 5_000)


def _world(user: tuple[float, float], movie: tuple[float, float], global_std: float) -> SyntheticSpec:
    """The demo's shape with other (slope std, intercept std) per entity type and global std."""
    spec = movielens_spec(rows=ROWS).model_dump()
    for entity, (slopes, intercept) in zip(spec["entities"], (user, movie), strict=True):
        entity["random_effect_std"], entity["intercept_std"] = slopes, intercept
    spec["global_std"] = global_std
    return SyntheticSpec.model_validate(spec)


def _map_scores(x_index: np.ndarray, entity: np.ndarray, count: int, width: int, y: np.ndarray,
                offset: np.ndarray, train: np.ndarray, l2: np.ndarray) -> np.ndarray:
    """Every row's score from its entity's MAP fit on the training rows (intercept first)."""
    coefficients = np.zeros((count, width + 1))
    rows = np.flatnonzero(train)
    rows = rows[np.argsort(entity[rows], kind="stable")]
    bounds = np.searchsorted(entity[rows], np.arange(count + 1))
    for e in range(count):
        mine = rows[bounds[e]:bounds[e + 1]]
        if len(mine) == 0:
            continue
        x = np.zeros((len(mine), width + 1))
        x[:, 0] = 1.0
        np.put_along_axis(x[:, 1:], x_index[mine], 1.0, axis=1)
        b = np.zeros(width + 1)
        for _ in range(NEWTON_STEPS):
            p = 1 / (1 + np.exp(-(x @ b + offset[mine])))
            hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(l2)
            step = np.linalg.solve(hessian, x.T @ (p - y[mine]) + l2 * b)
            b -= step
            if np.abs(step).max() < 1e-10:
                break
        coefficients[e] = b
    chosen = coefficients[entity]
    scores: np.ndarray = chosen[:, 0] + np.take_along_axis(chosen[:, 1:], x_index, axis=1).sum(axis=1)
    return scores


def oracle(spec: SyntheticSpec) -> dict[str, float]:
    world = World(spec)
    rows = world.part(0, spec.rows)
    y, margin, validation = rows["label"], rows["score"], rows["validation"]
    effects = []
    for table, chosen, (slopes, intercepts) in zip(world.entities, rows["entities"], world.random_effects,
                                                   strict=True):
        index = rows["bag_index"][table.spec.random_effect_bag]
        effects.append(intercepts[chosen] + np.take_along_axis(slopes[chosen], index, axis=1).sum(axis=1))
    global_part = margin - sum(effects)
    fitted = []
    for k, (table, chosen) in enumerate(zip(world.entities, rows["entities"], strict=True)):
        bag = table.spec.random_effect_bag
        width, nnz = len(world.vocabularies[bag].keys), world.bag_nnz[bag]
        slope_l2 = nnz / max(table.spec.random_effect_std, 1e-6) ** 2    # per-coefficient std is std / sqrt(nnz)
        l2 = np.r_[1 / max(table.spec.intercept_std, 1e-6) ** 2, np.full(width, slope_l2)]
        others = global_part + sum(e for j, e in enumerate(effects) if j != k)
        fitted.append(_map_scores(rows["bag_index"][bag], chosen, table.spec.count, width, y, others, ~validation,
                                  l2))
    v = validation
    return {"truth": auc(y[v], margin[v]), "global": auc(y[v], global_part[v]),
            "oracle": auc(y[v], (global_part + sum(fitted))[v])}


def run() -> None:
    worlds = [("demo: global 2.5; user 0.2 / 1.3, movie 0.15 / 1.3", movielens_spec(rows=ROWS)),
              ("wide tastes: global 0.8; user 1.0 / 0.8, movie 0.6 / 0.8", _world((1.0, 0.8), (0.6, 0.8), 0.8)),
              ("global 2.0; user 0.15 / 1.0, movie 0.15 / 1.0", _world((0.15, 1.0), (0.15, 1.0), 2.0))]
    table = []
    for name, spec in worlds:
        r = oracle(spec)
        table.append((name, *(f"{v:.4f}" for v in (r["global"], r["oracle"], r["truth"], r["truth"] - r["oracle"]))))
    print_table(f"validation AUC on {ROWS:,} rows of the demo's shape (one draw; slope std / intercept std)",
                ["world", "true global only", "oracle bound", "truth", "truth - oracle"], table)
