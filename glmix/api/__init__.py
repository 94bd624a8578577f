"""The Python API for notebooks: explore a dataset, train step by step, inspect the model.

The CLI and the flow's stages run the same functions: reading is the jobs' reader, training the
runner `glmix train` uses, scoring the scoring job's Spark work, metrics the flow's evaluation's
evaluators, the summary and the figures the report's.
"""

from glmix.api.dataset import Dataset, DatasetSummary, read_dataset
from glmix.api.estimator import GameEstimator
from glmix.api.model import GameModel
from glmix.api.plots import Plot
from glmix.game.config import GameConfig

__all__ = ["Dataset", "DatasetSummary", "GameConfig", "GameEstimator", "GameModel", "Plot", "read_dataset"]
