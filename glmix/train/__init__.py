"""The trainers: the fixed effect (GLM, or Keras), random effects (per-entity GLMs), external scores,
and what they take from a previous model. The Keras model functions (``keras_models``, which import
TensorFlow) are not re-exported here."""

from __future__ import annotations

from glmix.train.external_scores import import_scores
from glmix.train.fixed_effect import FixedEffectArgs, FixedEffectConfig, Trainer, TrainResult, read_model
from glmix.train.keras_fixed_effect import KerasArgs, KerasConfig, KerasTrainer
from glmix.train.random_effect import RandomEffectConfig, solve_batches
from glmix.train.warm_start import coefficients_at, prior_at

__all__ = ["FixedEffectArgs", "FixedEffectConfig", "KerasArgs", "KerasConfig", "KerasTrainer", "RandomEffectConfig",
           "TrainResult", "Trainer", "coefficients_at", "import_scores", "prior_at", "read_model", "solve_batches"]
