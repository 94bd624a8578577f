"""Evaluation metrics keyed by Photon ML's evaluator names.

AUC is computed here (one sort; equal to scikit-learn's ``roc_auc_score``, which the tests check)
because the per-group version needs it and because importing scikit-learn costs ~2.5 s, paid by
every fixed-effect trainer process for its per-iteration validation AUC. AUPR uses scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glmix.losses import Loss


def _weights(weight: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if weight is None else weight


def auc(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(auc_per_group(np.zeros(len(y), dtype=np.int64), y, margin, _weights(weight, len(y)))[0])


def aupr(y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    from sklearn.metrics import average_precision_score

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


def auc_per_group(codes: np.ndarray, y: np.ndarray, margin: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted AUC of every group (``codes`` 0..G-1) in one sort, as ``roc_auc_score`` per group
    would give (a tied positive-negative pair counts half); nan where a group lacks a label.

    A loop of ``roc_auc_score`` calls costs ~1 ms a group: seconds for a thousand users."""
    order = np.lexsort((margin, codes))
    group, score, positive, w = codes[order], margin[order], y[order] > 0, weight[order]
    group_starts = np.r_[True, group[1:] != group[:-1]]
    block_starts = group_starts | np.r_[True, score[1:] != score[:-1]]   # a block: one group's tied scores
    block = np.cumsum(block_starts) - 1
    block_group = group[block_starts]
    positive_weight = np.bincount(block, w * positive)
    negative_weight = np.bincount(block, w * ~positive)
    negatives_before = np.cumsum(negative_weight) - negative_weight     # over all blocks so far
    opens_group = group_starts[block_starts]
    group_first_block = np.flatnonzero(opens_group)[np.cumsum(opens_group) - 1]
    negatives_below = negatives_before - negatives_before[group_first_block]   # within the block's group
    groups = int(codes.max()) + 1 if len(codes) else 0
    ranked = np.bincount(block_group, positive_weight * (negatives_below + 0.5 * negative_weight), minlength=groups)
    pairs = np.bincount(block_group, positive_weight, minlength=groups) * \
        np.bincount(block_group, negative_weight, minlength=groups)
    both_labels = (np.bincount(codes, y > 0, minlength=groups) > 0) & (np.bincount(codes, y <= 0, minlength=groups) > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(both_labels, ranked / pairs, np.nan)


def evaluate(evaluator: str, y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
    """One ungrouped evaluator by name: AUC, AUPR, LOGISTIC_LOSS, RMSE, POISSON_LOSS or PRECISION@k."""
    if evaluator.startswith("PRECISION@"):
        return precision_at_k(y, margin, int(evaluator.removeprefix("PRECISION@")))
    return METRICS[evaluator](y, margin, weight)
