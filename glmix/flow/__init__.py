"""Running flows: Azkaban Flow 2.0 projects (files, loader rules, zip), the Azkaban client, and
the local runner that runs a project on this machine."""

from __future__ import annotations

from glmix.flow.azkaban import Flow, Node, read_project, validate_project, write_project, zip_project
from glmix.flow.azkaban_client import AzkabanClient
from glmix.flow.loader_rules import validate_flow
from glmix.flow.runner import LocalRunner

__all__ = ["AzkabanClient", "Flow", "LocalRunner", "Node", "read_project", "validate_flow", "validate_project",
           "write_project", "zip_project"]
