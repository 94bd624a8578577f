"""Serving: a GAME model as a bundle a serving host copies, the online scorer, the scoring service."""

from glmix.serving.bundle import BundleCoordinate, Manifest, local_copy, read_manifest
from glmix.serving.parity import ParityReport, check_parity
from glmix.serving.scorer import OnlineScorer, Scored

__all__ = ["BundleCoordinate", "Manifest", "OnlineScorer", "ParityReport", "Scored", "check_parity", "local_copy",
           "read_manifest"]
