"""The model registry: versions of GAME models on storage with their metadata, states and a production alias."""

from glmix.registry.metadata import flow_metadata
from glmix.registry.store import ModelRegistry, RegistryError, Version

__all__ = ["ModelRegistry", "RegistryError", "Version", "flow_metadata"]
