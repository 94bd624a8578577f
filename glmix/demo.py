"""The embedded demo: MovieLens-shaped data, then the stages that exist so far, all on this machine.

Generate -> index the global shard -> prepare train and validation -> train the fixed effect
(one process) -> compare its validation AUC with the ground-truth model's. The random-effect
coordinates and the coordinate-descent flow join in with the GAME pipeline.
"""

from __future__ import annotations

import time

import numpy as np

from glmix.config import FeatureShard
from glmix.examples import ExampleReader
from glmix.fixed_effect import FixedEffectConfig, Trainer
from glmix.metrics import auc
from glmix.model_io import read_models
from glmix.schemas import INTERCEPT_NAME
from glmix.sparse_rows import load_rows
from glmix.storage import join, qualified

BAGS = ("features", "userFeatures", "movieFeatures")
RANDOM_EFFECT_BAGS = {"userId": "movieFeatures", "movieId": "userFeatures"}


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


def run_stages(output: str) -> list[tuple[str, str, float]]:
    """Run the existing stages on the generated data; returns (step, detail, seconds) rows."""
    from glmix.spark import session
    from jobs.index_features import index_features
    from jobs.prepare_fixed_effect import prepare_fixed_effect

    data, steps = join(output, "data"), []
    started = time.monotonic()
    spark = session("local[2]", "glmix-demo")
    index_features(spark, join(data, "train"), join(output, "index"), FeatureShard(name="global", bags=BAGS))
    steps.append(("index features", "global shard", time.monotonic() - started))
    for split in ("train", "validation"):
        started = time.monotonic()
        prepare_fixed_effect(spark, join(data, split), join(output, "index"), join(output, "fe", split), files=2,
                             task="logistic")
        steps.append((f"prepare {split}", "2 files", time.monotonic() - started))
    started = time.monotonic()
    report = Trainer(FixedEffectConfig(task="logistic", l2=1.0), qualified(join(output, "index")),
                     join(output, "fe", "train"), join(output, "model", "fixed-effect"),
                     validation=join(output, "fe", "validation")).run()
    steps.append(("train fixed effect", f"{report['iterations']} iterations, {report['stop_reason']}",
                  time.monotonic() - started))
    return steps


def fixed_effect_validation_auc(output: str) -> float:
    rows = load_rows(join(output, "fe", "validation"))
    model = next(read_models(join(output, "model", "fixed-effect", "model"))).means
    from glmix.feature_index import FeatureIndex

    coefficients = np.array([model.get(key, 0.0) for key in FeatureIndex.load(join(output, "index")).keys()])
    margins = rows.to_scipy(len(coefficients)) @ coefficients + rows.offset
    return auc(rows.label, margins)
