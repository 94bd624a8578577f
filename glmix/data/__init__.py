"""The data the solvers see: feature index maps, a worker's rows as CSR, synthetic GLMix worlds."""

from __future__ import annotations

from glmix.data.feature_index import FeatureIndex, write_shard_meta
from glmix.data.sparse_rows import SparseRows, load_rows, total_rows
from glmix.data.synthetic import SyntheticSpec, World, generate, generic_spec, load_spec, movielens_spec

__all__ = ["FeatureIndex", "SparseRows", "SyntheticSpec", "World", "generate", "generic_spec", "load_rows",
           "load_spec", "movielens_spec", "total_rows", "write_shard_meta"]
