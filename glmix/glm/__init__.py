"""GLM mathematics every trainer shares: the losses (numpy and TensorFlow forms), the evaluators,
the L-BFGS / OWL-QN optimizer, a worker's objective and the batched per-entity Newton solver."""

from __future__ import annotations

from glmix.glm.batched_newton import EntityProblem, EntitySolution, SolverSettings, solve_entities
from glmix.glm.losses import Loss
from glmix.glm.metrics import Evaluator, auc, default_evaluator
from glmix.glm.objective import OBJECTIVES, Objective, ScipyObjective, TfObjective
from glmix.glm.optim import OptimizeResult, OptimizerState, minimize

__all__ = ["EntityProblem", "EntitySolution", "Evaluator", "Loss", "OBJECTIVES", "Objective", "OptimizeResult",
           "OptimizerState", "ScipyObjective", "SolverSettings", "TfObjective", "auc", "default_evaluator",
           "minimize", "solve_entities"]
