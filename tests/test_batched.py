"""The batched per-entity solver on its own: every entity at scipy's optimum, for each task."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from glmix.glm.batched_newton import EntityProblem, SolverSettings, entity_objective, solve_entities
from tests.fe_reference import reference_objective


def entities(task: str, count: int, seed: int = 0) -> list[EntityProblem]:
    """Entities of mixed dimension and row count (several blocks), intercept first and unregularized."""
    rng = np.random.default_rng(seed)
    problems = []
    for e in range(count):
        n, d = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        x = np.hstack([np.ones((n, 1)), rng.normal(size=(n, d - 1))])
        margin = x @ rng.normal(size=d) * 0.5
        y = {"logistic": (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(float),
             "linear": margin + rng.normal(size=n),
             "poisson": rng.poisson(np.exp(margin)).astype(float)}[task]
        l2 = np.full(d, 0.5)
        l2[0] = 0.0 if y.min() < y.max() else 0.5  # a constant label needs a regularized intercept
        problems.append(EntityProblem(f"e{e}", x, y, rng.uniform(0.5, 2.0, n), rng.normal(size=n) * 0.1,
                                      l2, np.zeros(d), np.zeros(d)))
    return problems


def relative_gaps(problems: list[EntityProblem], task: str) -> np.ndarray:
    solutions = solve_entities(problems, SolverSettings(task))
    assert [s.entity_id for s in solutions] == [p.entity_id for p in problems]
    gaps = []
    for p, s in zip(problems, solutions, strict=True):
        assert s.converged
        expected = reference_objective(sp.csr_matrix(p.x), p.y, p.w, p.o, task, p.l2, p.l1)
        ours = entity_objective(p, task, s.coefficients)[0] + float(p.l1 @ np.abs(s.coefficients))
        assert s.objective == pytest.approx(ours, rel=1e-12)
        gaps.append((ours - expected) / abs(expected))
    return np.array(gaps)


@pytest.mark.parametrize("task", ["logistic", "linear", "poisson"])
def test_every_entity_at_the_reference_optimum(task: str) -> None:
    assert relative_gaps(entities(task, 300), task).max() < 1e-6


def test_nearly_separable_entities_need_the_line_search() -> None:
    """A full Newton step from 0 overshoots on (nearly) separable data; backtracking must rescue it."""
    rng = np.random.default_rng(3)
    problems = []
    for e in range(50):
        x = np.hstack([np.ones((20, 1)), rng.normal(size=(20, 2)) * 10])
        y = (x[:, 1] > 0).astype(float)
        problems.append(EntityProblem(f"e{e}", x, y, np.ones(20), np.full(20, 3.0), np.full(3, 1e-3),
                                      np.zeros(3), np.zeros(3)))
    assert relative_gaps(problems, "logistic").max() < 1e-6


def test_prior_pulls_towards_its_mean() -> None:
    """With a Gaussian prior the optimum of the prior-augmented objective is reached, and a strong
    prior keeps the coefficients at its mean."""
    problems = entities("logistic", 40, seed=5)
    for p in problems:
        d = p.x.shape[1]
        p.prior_mean, p.prior_precision = np.full(d, 0.7), np.full(d, 1e6)
    for p, s in zip(problems, solve_entities(problems, SolverSettings("logistic")), strict=True):
        assert s.converged
        np.testing.assert_allclose(s.coefficients, 0.7, atol=1e-3)
        assert np.abs(entity_objective(p, "logistic", s.coefficients)[1]).max() < 1e-6


def test_l1_entities_take_owlqn_and_mix_with_newton_blocks() -> None:
    problems = entities("logistic", 60, seed=7)
    for p in problems[::3]:
        p.l1 = np.full(p.x.shape[1], 0.3)
    assert relative_gaps(problems, "logistic").max() < 1e-6
