"""The trainers: the fixed effect (GLM, or Keras), random effects (per-entity GLMs), external scores,
and what they take from a previous model.

The modules a flow runs as ``python -m glmix.train.<module>`` (the two fixed-effect trainers,
importing external scores) are not re-exported: a package that imported them would have runpy
execute each twice (once imported, once as ``__main__``, with a RuntimeWarning in every worker's
log). Nor are the Keras model functions (``keras_models``, which import TensorFlow)."""

from __future__ import annotations

from glmix.train.random_effect import RandomEffectConfig, solve_batches
from glmix.train.warm_start import coefficients_at, prior_at

__all__ = ["RandomEffectConfig", "coefficients_at", "prior_at", "solve_batches"]
