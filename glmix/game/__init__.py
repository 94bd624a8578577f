"""A GAME model from one config: the config, the plan of stages and their paths, the flow that runs
them, best-model selection, the demo world. The report (matplotlib) is not re-exported here."""

from __future__ import annotations

from glmix.game.config import GameConfig
from glmix.game.demo import demo_config
from glmix.game.flow_builder import build_project
from glmix.game.plan import GamePlan, Step
from glmix.game.select_best import select_best

__all__ = ["GameConfig", "GamePlan", "Step", "build_project", "demo_config", "select_best"]
