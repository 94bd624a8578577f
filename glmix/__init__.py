"""glmix: GLMix / GAME personalization models (a fixed effect plus per-entity random effects).

The notebook API is importable from here (``from glmix import read_dataset, GameConfig,
GameEstimator, GameModel``); it is loaded on first use, so that ``import glmix.io`` in a launcher
task or a Spark executor does not start Spark or load pandas.
"""

from typing import Any

__version__ = "0.1.0"

API = ("read_dataset", "Dataset", "GameConfig", "GameEstimator", "GameModel")


def __getattr__(name: str) -> Any:
    if name in API:
        from glmix import api

        return getattr(api, name)
    raise AttributeError(f"module 'glmix' has no attribute {name!r}")


__all__ = ["API", "__version__", *API]
