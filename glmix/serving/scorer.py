"""The online scorer: a serving bundle applied to one request at a time, as the Spark scoring job
applies the model to a row (jobs/score.py), so that the two agree to rounding.

A coordinate's score is the sum over the features of its bags of value x coefficient, matched by
(name, term) with a missing term as '', plus its intercept when its shard has one; a random effect
uses the coefficients of the request's entity and scores 0 without one (no id, or an entity the
model does not know). The request's score is its offset plus every coordinate's score. Features a
coordinate's model has never seen add nothing and are counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.feather as feather

from glmix.glm.losses import Loss
from glmix.io.examples import to_id
from glmix.io.schemas import INTERCEPT_NAME
from glmix.serving.bundle import BundleCoordinate, coordinate_dir, local_copy
from glmix.serving.entity_store import EntityStore, shard_name

FeatureTriple = tuple[str, str | None, float]
Features = Mapping[str, Iterable[FeatureTriple]]      # bag -> (name, term, value) each
INTERCEPT = (INTERCEPT_NAME, "")
DEFAULT_CACHE = Path.home() / ".cache" / "glmix" / "bundles"


@dataclass(frozen=True)
class Scored:
    score: float                       # offset + every coordinate's score: the scoring job's predictionScore
    mean: float | None                 # the task's mean for that margin (probability, value, rate)
    coordinates: dict[str, float]
    unknown_features: dict[str, int]   # per coordinate: features its model has never seen
    without_model: tuple[str, ...]     # random effects that had no model for the request's entity

    def to_dict(self) -> dict[str, object]:
        return {"score": self.score, "mean": self.mean, "coordinates": self.coordinates,
                "unknown_features": self.unknown_features, "without_model": list(self.without_model)}


class _FixedEffect:
    def __init__(self, coordinate: BundleCoordinate, root: Path) -> None:
        table = feather.read_table(str(root / coordinate_dir(coordinate.name) / "fixed.arrow"))
        keys = zip(table.column("name").to_pylist(), table.column("term").to_pylist(), strict=True)
        self.coefficients: dict[tuple[str, str], float] = dict(zip(keys, table.column("value").to_pylist(),
                                                                   strict=True))
        self.intercept = self.coefficients.get(INTERCEPT, 0.0) if coordinate.intercept else 0.0
        self.bags = coordinate.bags

    def score(self, features: Features) -> tuple[float, int]:
        total, unknown = self.intercept, 0
        coefficients = self.coefficients
        for bag in self.bags:
            for name, term, value in features.get(bag, ()):
                coefficient = coefficients.get((name, term or ""))
                if coefficient is None:
                    unknown += 1
                else:
                    total += value * coefficient
        return total, unknown


class _RandomEffect:
    def __init__(self, coordinate: BundleCoordinate, root: Path) -> None:
        directory = root / coordinate_dir(coordinate.name)
        table = feather.read_table(str(directory / "features.arrow"))
        self.index: dict[tuple[str, str], int] = {
            key: i for i, key in enumerate(zip(table.column("name").to_pylist(), table.column("term").to_pylist(),
                                               strict=True))}
        self.intercept = self.index.get(INTERCEPT) if coordinate.intercept else None
        self.store = EntityStore([directory / shard_name(s) for s in range(coordinate.shards)])
        self.bags, self.entity_field = coordinate.bags, coordinate.entity_field

    def score(self, features: Features, entity: str | None) -> tuple[float, int, bool]:
        model = self.store.get(entity) if entity is not None else None
        values: dict[int, float] = {}
        unknown = 0
        index = self.index
        for bag in self.bags:
            for name, term, value in features.get(bag, ()):
                position = index.get((name, term or ""))
                if position is None:
                    unknown += 1
                else:
                    values[position] = values.get(position, 0.0) + value
        if model is None:
            return 0.0, unknown, False
        if self.intercept is not None:
            values[self.intercept] = values.get(self.intercept, 0.0) + 1.0
        indices, coefficients = model
        total = 0.0
        for position, coefficient in zip(indices.tolist(), coefficients.tolist(), strict=True):
            given = values.get(position)
            if given is not None:
                total += given * coefficient
        return total, unknown, True


class OnlineScorer:
    """A loaded bundle. ``score`` is thread-safe; a bundle on HDFS is copied to ``cache`` first."""

    def __init__(self, bundle: str, cache: Path = DEFAULT_CACHE, verify: bool = True) -> None:
        root, self.manifest = local_copy(bundle, cache, verify)
        self.bundle = bundle
        self._fixed = {c.name: _FixedEffect(c, root) for c in self.manifest.coordinates if c.type == "fixed"}
        self._random = {c.name: _RandomEffect(c, root) for c in self.manifest.coordinates if c.type == "random"}
        self._order = [c.name for c in self.manifest.coordinates]
        self._loss = Loss(self.manifest.task) if self.manifest.task else None   # type: ignore[arg-type]
        self._lock = threading.Lock()
        self.unknown_features: Counter[str] = Counter()
        self.requests = 0

    @property
    def coordinates(self) -> tuple[BundleCoordinate, ...]:
        return self.manifest.coordinates

    def score(self, features: Features, ids: Mapping[str, object] | None = None, offset: float = 0.0) -> Scored:
        ids = ids or {}
        scores: dict[str, float] = {}
        unknown: dict[str, int] = {}
        without: list[str] = []
        for name in self._order:
            fixed = self._fixed.get(name)
            if fixed is not None:
                scores[name], unknown[name] = fixed.score(features)
                continue
            random = self._random[name]
            raw = ids.get(random.entity_field or "")
            scores[name], unknown[name], found = random.score(features, None if raw is None else to_id(raw))
            if not found:
                without.append(name)
        total = offset + sum(scores.values())
        with self._lock:
            self.requests += 1
            self.unknown_features.update({k: v for k, v in unknown.items() if v})
        mean = float(self._loss.mean(np.array(total))) if self._loss else None
        return Scored(total, mean, scores, unknown, tuple(without))

    def close(self) -> None:
        for random in self._random.values():
            random.store.close()
