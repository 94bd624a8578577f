"""Evaluation metrics keyed by Photon ML's evaluator names.

AUC is computed here (one sort; equal to scikit-learn's ``roc_auc_score``, which the tests check)
because the per-group version needs it and because importing scikit-learn costs ~2.5 s, paid by
every fixed-effect trainer process for its per-iteration validation AUC. AUPR uses scikit-learn.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glmix.glm.losses import Loss
from glmix.settings import Task


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


Metric = Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]
# Photon ML's evaluator names -> (metric of labels, margins and weights; is higher better)
_METRICS: dict[str, tuple[Metric, bool]] = {
    "AUC": (auc, True), "AUPR": (aupr, True), "LOGISTIC_LOSS": (logistic_loss, False), "RMSE": (rmse, False),
    "POISSON_LOSS": (poisson_loss, False)}
_NAME = re.compile(r"^(?P<metric>AUC|AUPR|LOGISTIC_LOSS|RMSE|POISSON_LOSS|PRECISION@(?P<k>[1-9][0-9]*))"
                   r"(:(?P<group>[A-Za-z_][A-Za-z0-9_]*))?$")


@dataclass(frozen=True)
class Evaluator:
    """An evaluator by Photon ML's name: AUC, AUPR, LOGISTIC_LOSS, RMSE, POISSON_LOSS or PRECISION@k,
    optionally averaged over the groups of an id field (``AUC:userId``, ``PRECISION@5:userId``).
    The one definition of what an evaluator name means, for the config, the evaluation job, the
    trainers' validation curves and the best-model choice."""

    name: str
    metric: str            # AUC ... POISSON_LOSS, or PRECISION@k
    group: str | None

    @classmethod
    def parse(cls, name: str) -> Evaluator:
        """Raises ValueError naming the evaluator when the name is not one of the above."""
        match = _NAME.match(name)
        if not match:
            raise ValueError(f"unknown evaluator {name!r} (AUC, AUPR, LOGISTIC_LOSS, RMSE, POISSON_LOSS, "
                             "PRECISION@k, each optionally grouped as NAME:idField)")
        return cls(name, match["metric"], match["group"])

    @property
    def higher_is_better(self) -> bool:
        return self.metric.startswith("PRECISION@") or _METRICS[self.metric][1]

    def needs_both_labels(self) -> bool:
        """AUC and AUPR are undefined on one label (a group without both is left out of the mean)."""
        return self.metric in ("AUC", "AUPR")

    def __call__(self, y: np.ndarray, margin: np.ndarray, weight: np.ndarray | None = None) -> float:
        """The ungrouped metric of these rows."""
        if self.metric.startswith("PRECISION@"):
            return precision_at_k(y, margin, int(self.metric.removeprefix("PRECISION@")))
        return _METRICS[self.metric][0](y, margin, weight)

    def grouped(self, groups: np.ndarray, y: np.ndarray, margin: np.ndarray,
                weight: np.ndarray) -> tuple[float, int]:
        """Mean of the metric over the groups where it is defined (both labels for AUC and AUPR, a
        positive for PRECISION@k), as Photon ML's ``AUC:<idTag>``, and how many groups that is."""
        if self.metric == "AUC":
            values = auc_per_group(np.unique(groups, return_inverse=True)[1], y, margin, weight)
            defined = values[~np.isnan(values)]
            return (float(np.mean(defined)) if len(defined) else float("nan")), len(defined)
        order = np.argsort(groups, kind="stable")
        boundaries = np.flatnonzero(groups[order][1:] != groups[order][:-1]) + 1
        per_group: list[float] = []
        for rows in np.split(order, boundaries):
            labels = y[rows]
            if self.needs_both_labels() and len(np.unique(labels)) < 2:
                continue
            if self.metric.startswith("PRECISION@") and not np.any(labels > 0):
                continue
            per_group.append(self(labels, margin[rows], weight[rows]))
        return (float(np.mean(per_group)) if per_group else float("nan")), len(per_group)


def evaluate_all(evaluators: list[Evaluator], y: np.ndarray, margin: np.ndarray, weight: np.ndarray,
                 ids_of: Callable[[Evaluator], np.ndarray]) -> tuple[dict[str, float], dict[str, int]]:
    """Every evaluator's value, and for the grouped ones how many groups counted; ``ids_of(evaluator)``
    gives the rows' ids of a grouped evaluator's field (the flow's evaluation and the notebook API)."""
    metrics: dict[str, float] = {}
    groups: dict[str, int] = {}
    for evaluator in evaluators:
        if evaluator.group:
            metrics[evaluator.name], groups[evaluator.name] = evaluator.grouped(ids_of(evaluator), y, margin,
                                                                                weight)
        else:
            metrics[evaluator.name] = evaluator(y, margin, weight)
    return metrics, groups


def default_evaluator(task: Task) -> Evaluator:
    """What a trainer's validation curve shows for a task."""
    return Evaluator.parse({"logistic": "AUC", "linear": "RMSE", "poisson": "POISSON_LOSS"}[task])


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
