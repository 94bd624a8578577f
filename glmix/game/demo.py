"""The embedded demo: MovieLens-shaped data, the full GAME flow on this machine, metrics and a report.

Generate -> build the flow of the MovieLens config (global + per-user + per-movie, two passes) ->
run it with the local runner (Spark local[2], launcher local backend, local disk) -> print the
validation metrics after every coordinate update next to the ground-truth model's AUC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glmix.game.config import GameConfig
from glmix.io.examples import ExampleReader
from glmix.io.schemas import INTERCEPT_NAME
from glmix.io.storage import join
from glmix.model.linear_model import read_models

BAGS = ("features", "userFeatures", "movieFeatures")
RANDOM_EFFECT_BAGS = {"userId": "movieFeatures", "movieId": "userFeatures"}
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "movielens.yaml"


def demo_config(output: Path, passes: int = 2) -> GameConfig:
    """The example MovieLens config, pointed at local data and run embedded."""
    config = GameConfig.from_yaml(EXAMPLE_CONFIG).to_dict()
    # one process: scipy products are faster than TensorFlow's at this size, and the step skips
    # importing TensorFlow (4 s)
    config["coordinates"]["global"]["compute"] = "scipy"
    config.update({
        "name": "movielens-demo", "passes": passes,
        "input": {"train": str(output / "data" / "train"), "validation": str(output / "data" / "validation")},
        "output": str(output / "game"),
        "resources": {"spark": {"master": "local[2]", "partitions": 2},
                      "launcher": {"backend": "local", "workers": 1, "memory": 2048}},
        "flow": {"retries": 0, "retry_backoff_ms": 0}})
    return GameConfig.from_dict(config).resolved(Path.cwd())


def true_margins(data: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the generating model's margins on the validation rows."""
    fixed = next(read_models(join(data, "truth", "fixed-effect"))).means
    effects = {field: {m.model_id: m.means for m in read_models(join(data, "truth", "random-effect", field))}
               for field in RANDOM_EFFECT_BAGS}
    reader = ExampleReader(bags=BAGS, entity_fields=tuple(RANDOM_EFFECT_BAGS))
    labels, margins = [], []
    for example in reader.read(join(data, "validation")):
        margin = fixed[(INTERCEPT_NAME, "")] + sum(fixed[(n, t)] * v for bag in example.bags.values()
                                                   for n, t, v in bag)
        for field, bag in RANDOM_EFFECT_BAGS.items():
            means = effects[field][example.ids[field]]
            margin += means[(INTERCEPT_NAME, "")] + sum(means[(n, t)] * v for n, t, v in example.bags[bag])
        labels.append(example.label)
        margins.append(margin)
    return np.array(labels), np.array(margins)
