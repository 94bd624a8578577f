"""Evaluation metrics (scikit-learn where it has them), keyed by Photon ML's evaluator names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from glmix.losses import Loss


def _weights(weight: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if weight is None else weight


def auc(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, margin, sample_weight=weight))


def aupr(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(average_precision_score(y, margin, sample_weight=weight))


def logistic_loss(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    w = _weights(weight, len(y))
    return float(np.sum(w * Loss("logistic").value(y, margin)) / np.sum(w))


def rmse(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    w = _weights(weight, len(y))
    return float(np.sqrt(np.sum(w * (margin - y) ** 2) / np.sum(w)))


def poisson_loss(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    w = _weights(weight, len(y))
    return float(np.sum(w * Loss("poisson").value(y, margin)) / np.sum(w))


METRICS: dict[str, Callable[..., float]] = {"AUC": auc, "AUPR": aupr, "LOGISTIC_LOSS": logistic_loss,
                                             "RMSE": rmse, "POISSON_LOSS": poisson_loss}
DEFAULT_METRIC = {"logistic": "AUC", "linear": "RMSE", "poisson": "POISSON_LOSS"}
HIGHER_IS_BETTER = {"AUC": True, "AUPR": True, "LOGISTIC_LOSS": False, "RMSE": False, "POISSON_LOSS": False}


def precision_at_k(y: np.ndarray, margin: np.ndarray, k: int) -> float:
    """Share of positives among the k highest-scored rows (all rows when fewer than k)."""
    top = np.argsort(-margin, kind="stable")[:k]
    return float(np.mean(y[top] > 0)) if len(top) else float("nan")


def evaluate(evaluator: str, y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    """One ungrouped evaluator by name: AUC, AUPR, LOGISTIC_LOSS, RMSE, POISSON_LOSS or PRECISION@k."""
    if evaluator.startswith("PRECISION@"):
        return precision_at_k(y, margin, int(evaluator.removeprefix("PRECISION@")))
    return METRICS[evaluator](y, margin, weight)
