"""``l2: auto``: the learned prior variances are where the evidence is largest.

Oracles: for a linear task the exact marginal likelihood (y_e ~ N(o, s2_noise I + X_e D X_e')),
maximized by scipy; for logistic and Poisson the Laplace approximation of the marginal likelihood
(each entity's optimum, its Hessian's log-determinant), maximized by scipy. Worlds are drawn with
known variances, which the learned ones approach where the entities have enough rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from glmix.glm.batched_newton import EntityProblem, SolverSettings, solve_entities
from glmix.glm.losses import Loss
from glmix.settings import Task
from glmix.train.prior_variance import Moments, evidence_update, learn_prior_variances
from glmix.train.random_effect import RandomEffectConfig, posteriors

D = 4  # intercept and 3 slopes


def world(task: Task, entities: int, rows: tuple[int, int], intercept_sd: float, slope_sd: float,
          noise_sd: float = 1.0, seed: int = 0) -> list[EntityProblem]:
    rng = np.random.default_rng(seed)
    problems = []
    for e in range(entities):
        n = int(rng.integers(*rows))
        x = np.hstack([np.ones((n, 1)), rng.normal(size=(n, D - 1))])
        o = rng.normal(0, 0.3, n)
        m = x @ np.concatenate([[rng.normal(0, intercept_sd)], rng.normal(0, slope_sd, D - 1)]) + o
        if task == "logistic":
            y = (rng.random(n) < 1 / (1 + np.exp(-m))).astype(float)
        elif task == "poisson":
            y = rng.poisson(np.exp(m)).astype(float)
        else:
            y = m + rng.normal(0, noise_sd, n)
        problems.append(EntityProblem(f"e{e}", x, y, np.ones(n), o, np.ones(D), np.zeros(D), np.zeros(D)))
    return problems


INTERCEPTS = [np.arange(D) == 0] * 10_000


def set_weights(problems: list[EntityProblem], intercept_l2: float, l2: float) -> None:
    for p in problems:
        p.l2 = np.where(np.arange(D) == 0, intercept_l2, l2)


def learn(problems: list[EntityProblem], task: Task, tolerance: float = 1e-8):
    settings = SolverSettings(task=task)

    def posteriors_at(variances):
        set_weights(problems, 1 / variances["intercept"], 1 / variances["slopes"])
        return posteriors(problems, INTERCEPTS[:len(problems)], settings)

    return learn_prior_variances({"intercept": 1.0, "slopes": 1.0}, posteriors_at, task == "linear", 60, tolerance)


def exact_linear_evidence(problems: list[EntityProblem]):
    """The function sum_e log N(y_e; o_e, s2 I + X_e P X_e') of the log variances (intercept, slopes,
    noise), by the determinant lemma and Woodbury's identity over every entity at once."""
    gram = np.array([p.x.T @ p.x for p in problems])
    projected = np.array([p.x.T @ (p.y - p.o) for p in problems])
    squares = sum(float((p.y - p.o) @ (p.y - p.o)) for p in problems)
    rows = sum(len(p.y) for p in problems)

    def evidence(log_params: np.ndarray) -> float:
        intercept_var, slope_var, noise_var = np.exp(log_params)
        prior = np.array([intercept_var] + [slope_var] * (D - 1))
        inner = np.diag(1 / prior)[None] + gram / noise_var
        log_det = rows * np.log(noise_var) + len(problems) * np.sum(np.log(prior)) + np.linalg.slogdet(inner)[1].sum()
        solved = np.linalg.solve(inner, projected[..., None])[..., 0]
        quadratic = squares / noise_var - np.einsum("ed,ed->", projected, solved) / noise_var ** 2
        return float(-0.5 * (rows * np.log(2 * np.pi) + log_det + quadratic))

    return evidence


def laplace_evidence(problems: list[EntityProblem], task: Task, log_variances: np.ndarray) -> float:
    """sum_e [ -f_e(b_e) + 1/2 log|L| - 1/2 log|H_e| ]: f the loss plus the L2 penalty, L the weights."""
    intercept_l2, l2 = np.exp(-log_variances)
    set_weights(problems, intercept_l2, l2)
    weights = np.array([intercept_l2] + [l2] * (D - 1))
    total = 0.0
    for solution in solve_entities(problems, SolverSettings(task=task, gtol=1e-12), want_hessian=True):
        total += -solution.objective + 0.5 * np.sum(np.log(weights)) - 0.5 * np.linalg.slogdet(solution.hessian)[1]
    return total


def test_linear_variances_maximize_the_exact_evidence() -> None:
    problems = world("linear", 300, (3, 15), intercept_sd=1.0, slope_sd=0.4, noise_sd=1.5)
    learned = learn(problems, "linear")
    assert learned.converged
    ours = np.log([learned.variances["intercept"] * learned.dispersion,
                   learned.variances["slopes"] * learned.dispersion, learned.dispersion])
    evidence = exact_linear_evidence(problems)
    best = minimize(lambda t: -evidence(t), np.zeros(3), method="Nelder-Mead",
                    options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
    print(f"learned {np.exp(ours)}, exact evidence's maximum {np.exp(best.x)}")
    np.testing.assert_allclose(ours, best.x, atol=1e-4)


@pytest.mark.parametrize("task", ["logistic", "poisson"])
def test_variances_maximize_the_laplace_evidence(task: Task) -> None:
    problems = world(task, 100, (10, 40), intercept_sd=1.0, slope_sd=0.4, seed=1)
    learned = learn(problems, task)
    assert learned.converged
    ours = np.log([learned.variances["intercept"], learned.variances["slopes"]])
    start = ours + 0.05
    best = minimize(lambda t: -laplace_evidence(problems, task, t), start, method="Nelder-Mead",
                    options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 2000,
                             "initial_simplex": [start, start + [0.05, 0], start + [0, 0.05]]})
    print(f"{task}: learned {np.exp(ours)}, Laplace evidence's maximum {np.exp(best.x)}")
    np.testing.assert_allclose(ours, best.x, atol=1e-4)


@pytest.mark.parametrize("task,noise_sd", [("logistic", 1.0), ("poisson", 1.0), ("linear", 2.0)])
def test_learned_variances_are_near_the_true_ones(task: Task, noise_sd: float) -> None:
    """With ~100 rows per entity the data identify both variances (true: 1.0 and 0.09)."""
    problems = world(task, 1500, (50, 150), intercept_sd=1.0, slope_sd=0.3, noise_sd=noise_sd, seed=2)
    learned = learn(problems, task, tolerance=1e-4)
    scale = learned.dispersion
    print(f"{task}: {learned.variances} x {scale:.3f} after {len(learned.history)} solves")
    assert learned.variances["intercept"] * scale == pytest.approx(1.0, rel=0.1)
    assert learned.variances["slopes"] * scale == pytest.approx(0.09, rel=0.1)
    assert len(learned.history) <= 15
    if task == "linear":
        assert scale == pytest.approx(noise_sd ** 2, rel=0.05)


def test_update_has_the_em_fixed_point() -> None:
    """At a variance where N s2 = sum (mu^2 + S), the update leaves it unchanged."""
    moments = Moments(count=10, squared_means=3.0, variances=2.0)
    assert evidence_update(moments, 0.5) == pytest.approx(0.5)
    assert evidence_update(Moments(count=10, squared_means=0.0, variances=1.0), 1.0) == pytest.approx(1e-8)
    assert evidence_update(Moments(), 0.7) == 0.7          # nothing of that kind: unchanged


def test_third_derivatives_match_finite_differences() -> None:
    m = np.linspace(-3, 3, 7)
    for task in ("logistic", "poisson", "linear"):
        loss = Loss(task)
        numeric = (loss.second_derivative(np.zeros(7), m + 1e-6) - loss.second_derivative(np.zeros(7), m - 1e-6)) / 2e-6
        np.testing.assert_allclose(loss.third_derivative(m), numeric, atol=1e-6)


def test_auto_settings_say_what_they_learn() -> None:
    assert RandomEffectConfig(task="logistic", l2="auto").learned == ("intercept", "slopes")
    assert RandomEffectConfig(task="logistic", l2=2.0, intercept_l2="auto").learned == ("intercept",)
    assert RandomEffectConfig(task="logistic", l2="auto", intercept_l2=0.5).learned == ("slopes",)
    assert RandomEffectConfig(task="logistic", l2="auto", regularize_intercept=False).learned == ("slopes",)
    fixed = RandomEffectConfig(task="logistic", l2="auto").with_prior_variances({"intercept": 2.0, "slopes": 0.25})
    assert (fixed.intercept_weight, fixed.slope_weight) == (0.5, 4.0)
    with pytest.raises(ValueError, match="learned before solving"):
        _ = RandomEffectConfig(task="logistic", l2="auto").slope_weight
    with pytest.raises(ValueError, match="incremental prior"):
        RandomEffectConfig(task="logistic", l2="auto", prior="/models/previous")
    with pytest.raises(ValueError, match="set l1 to 0"):
        RandomEffectConfig(task="logistic", l2="auto", l1=0.1)


def test_a_kind_the_data_do_not_support_settles_near_zero_quickly() -> None:
    """No slopes in the world: their variance falls towards 0 in long steps and stops once the data
    determine less than one slope in all; the intercepts' is still learned."""
    problems = world("logistic", 600, (20, 60), intercept_sd=1.0, slope_sd=0.0, seed=3)
    learned = learn(problems, "logistic", tolerance=1e-3)
    print(learned.variances, len(learned.history))
    assert learned.converged and len(learned.history) <= 12
    assert learned.variances["slopes"] < 1e-3
    assert learned.variances["intercept"] == pytest.approx(1.0, rel=0.15)
