"""The feature index map of a shard: (name, term) -> column index, as written by jobs/index_features.

Format (documented in the README): ``<index dir>/index/part-*.parquet`` with columns
``name: string, term: string, index: int64`` plus ``<index dir>/_shard.json`` (the shard settings
and ``num_features``). Index 0 is the intercept ``("(INTERCEPT)", "")`` when the shard has one.
Parquet because trainers load it column-wise with pyarrow in one call, with no per-row parsing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from glmix.io.avro import read_avro_records
from glmix.io.parquet import read_parquet
from glmix.io.storage import join, storage_for
from glmix.settings import SHARD_META, FeatureShard


def write_shard_meta(directory: str, shard: FeatureShard, num_features: int) -> None:
    """Record which shard (and how many features) a directory's data was indexed with."""
    storage_for(directory).write_bytes(join(directory, SHARD_META), json.dumps(
        {"shard": shard.model_dump(mode="json"), "num_features": num_features}, indent=2).encode())


@dataclass
class FeatureIndex:
    shard: FeatureShard
    names: np.ndarray
    terms: np.ndarray

    @property
    def size(self) -> int:
        return len(self.names)

    @classmethod
    def load(cls, directory: str) -> FeatureIndex:
        meta = json.loads(storage_for(directory).read_bytes(join(directory, SHARD_META)))
        table = read_parquet(join(directory, "index"), ["name", "term", "index"])
        order = np.argsort(table.column("index").to_numpy())
        names = table.column("name").to_numpy(zero_copy_only=False)[order]
        terms = table.column("term").to_numpy(zero_copy_only=False)[order]
        if len(names) != meta["num_features"]:
            raise ValueError(f"{directory}: index has {len(names)} rows, _shard.json says {meta['num_features']}")
        return cls(FeatureShard.model_validate(meta["shard"]), names, terms)

    def keys(self) -> list[tuple[str, str]]:
        return list(zip(self.names.tolist(), self.terms.tolist(), strict=True))

    def lookup(self) -> dict[tuple[str, str], int]:
        return {key: i for i, key in enumerate(self.keys())}


def feature_statistics(directory: str, index: FeatureIndex) -> dict[str, np.ndarray]:
    """Each indexed feature's mean, variance, min and max over the indexed rows (the index job's
    FeatureSummary), by index; the intercept's are those of a constant 1."""
    stats = {name: np.zeros(index.size) for name in ("mean", "variance", "min", "max")}
    position = index.lookup()
    if index.shard.intercept:
        stats["mean"][0] = stats["min"][0] = stats["max"][0] = 1.0
    for record in read_avro_records(join(directory, "summary")):
        j = position.get((record["name"], record["term"]))
        if j is not None:
            for name in stats:
                stats[name][j] = record[name]
    return stats
