"""Models on storage: one GLM by feature name and term (Model Avro), and a GAME model's layout."""

from __future__ import annotations

from glmix.model.game_model import CoordinateModel, publish_game_model, read_game_model
from glmix.model.linear_model import LinearModel, read_models, write_models

__all__ = ["CoordinateModel", "LinearModel", "publish_game_model", "read_game_model", "read_models", "write_models"]
