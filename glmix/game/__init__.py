"""A GAME model from one config: the config, the plan of stages and their paths, the flow that runs
them, the demo world. Not re-exported: the modules a flow runs as ``python -m glmix.game.<module>``
(best-model selection, the report, waiting for input), which runpy would otherwise execute twice."""

from __future__ import annotations

from glmix.game.config import GameConfig
from glmix.game.demo import demo_config
from glmix.game.flow_builder import build_project
from glmix.game.plan import GamePlan, Step

__all__ = ["GameConfig", "GamePlan", "Step", "build_project", "demo_config"]
