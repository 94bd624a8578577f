"""glmix: GLMix / GAME personalization models (a fixed effect plus per-entity random effects)."""

__version__ = "0.1.0"
