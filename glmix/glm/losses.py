"""Pointwise GLM losses of the margin m = x.b + offset, with first and second derivatives in m.

    logistic:  log(1 + e^m) - y m        (y in {0, 1})
    linear:    (m - y)^2 / 2
    poisson:   e^m - y m                 (y >= 0; the log(y!) constant is left out)

Every trainer minimizes  sum_i w_i loss(y_i, m_i) + l2/2 |b|^2 + l1 |b|_1  (the intercept is not
regularized unless asked). Each formula is written here once per form, side by side: numpy (the
per-entity solver, the scipy engine, metrics and test references) and TensorFlow (the fixed-effect
engine and the Keras fixed effect). TensorFlow is imported only by the TensorFlow methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from glmix.settings import Task


def _log1pexp(m: np.ndarray) -> np.ndarray:
    """log(1 + e^m) without overflow; several times faster than np.logaddexp(0, m)."""
    return np.maximum(m, 0.0) + np.log1p(np.exp(-np.abs(m)))


def _sigmoid(m: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * m))


@dataclass(frozen=True)
class Loss:
    task: Task

    def value(self, y: np.ndarray, m: np.ndarray) -> np.ndarray:
        if self.task == "logistic":
            return _log1pexp(m) - y * m
        if self.task == "linear":
            return 0.5 * (m - y) ** 2
        return np.exp(m) - y * m

    def derivative(self, y: np.ndarray, m: np.ndarray) -> np.ndarray:
        if self.task == "logistic":
            return _sigmoid(m) - y
        if self.task == "linear":
            return m - y
        return np.exp(m) - y

    def derivatives(self, y: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and second derivative together (one sigmoid or exp instead of two)."""
        if self.task == "logistic":
            p = _sigmoid(m)
            return p - y, p * (1.0 - p)
        if self.task == "linear":
            return m - y, np.ones_like(m)
        e = np.exp(m)
        return e - y, e

    def second_derivative(self, y: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self.derivatives(y, m)[1]

    def third_derivative(self, m: np.ndarray) -> np.ndarray:
        """How fast the curvature changes with the margin (0 for the squared loss): the Laplace
        approximation's evidence depends on it through the Hessian at the optimum."""
        if self.task == "logistic":
            p = _sigmoid(m)
            return p * (1.0 - p) * (1.0 - 2.0 * p)
        if self.task == "linear":
            return np.zeros_like(m)
        return np.exp(m)

    def mean(self, m: np.ndarray) -> np.ndarray:
        """The predicted mean (probability, value or rate) for a margin."""
        if self.task == "logistic":
            return _sigmoid(m)
        if self.task == "linear":
            return m
        return np.exp(m)

    # ------------------------------------------------------------ TensorFlow forms
    def tf_value(self, y: Any, m: Any) -> Any:
        """The pointwise loss as a TensorFlow tensor (y cast to m's dtype by the caller)."""
        return self.tf_terms(y, m, derivatives=False)[0]

    def tf_terms(self, y: Any, m: Any, derivatives: bool = True) -> tuple[Any, Any, Any]:
        """Loss, first and second derivative in m, as TensorFlow tensors (derivatives None when not asked)."""
        import tensorflow as tf

        if self.task == "logistic":
            p = tf.math.sigmoid(m) if derivatives else None
            return tf.math.softplus(m) - y * m, None if p is None else p - y, None if p is None else p * (1 - p)
        if self.task == "linear":
            return 0.5 * tf.square(m - y), (m - y) if derivatives else None, tf.ones_like(m) if derivatives else None
        e = tf.exp(m)
        return e - y * m, (e - y) if derivatives else None, e if derivatives else None
