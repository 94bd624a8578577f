"""Azkaban Flow 2.0 projects as glmix writes and runs them: one flow of command jobs; zipped.

A project is a directory with ``<name>.project`` (``azkaban-flow-version: 2.0``, unquoted, or
Azkaban reads the flow as 1.0), ``.flow`` YAML files and any files the commands use. glmix writes
one flow of command nodes; any project is checked against Azkaban's loader rules
(glmix.flow.loader_rules). The zip has the files at its root, as Azkaban's upload expects.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glmix.errors import ConfigError
from glmix.flow.loader_rules import check_project, flow_files, validate_flow

FLOW_VERSION_LINE = "azkaban-flow-version: 2.0\n"


@dataclass
class Node:
    """One Azkaban command job."""

    name: str
    command: str
    depends_on: list[str] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        node: dict[str, Any] = {"name": self.name, "type": "command",
                                "config": {"command": self.command, **self.config}}
        if self.depends_on:
            node["dependsOn"] = list(self.depends_on)
        return node


@dataclass
class Flow:
    name: str
    nodes: list[Node]
    config: dict[str, str] = field(default_factory=dict)
    trigger: dict[str, Any] | None = None   # Azkaban's schedule (a scheduled flow); the local runner runs now

    def to_dict(self) -> dict[str, Any]:
        flow: dict[str, Any] = {"config": dict(self.config), "nodes": [n.to_dict() for n in self.nodes]}
        return {**flow, "trigger": self.trigger} if self.trigger else flow

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Flow:
        """A flow of command nodes (what glmix writes and runs), checked against the loader's rules."""
        validate_flow(data, name)
        others = [f"{n['name']} ({n['type']})" for n in data["nodes"] if n["type"] != "command"]
        if others:
            raise ConfigError(f"flow {name}: glmix runs command nodes only; not {', '.join(others)}")
        missing = [n["name"] for n in data["nodes"] if not (n.get("config") or {}).get("command")]
        if missing:
            raise ConfigError(f"flow {name}: node(s) {', '.join(missing)} have no config.command")
        nodes = [Node(n["name"], n["config"]["command"], list(n.get("dependsOn", [])),
                      {k: v for k, v in n["config"].items() if k != "command"}) for n in data["nodes"]]
        return cls(name, nodes, dict(data.get("config") or {}), data.get("trigger"))

    def order(self) -> list[Node]:
        """Nodes in a dependency-respecting order (the order they were declared, where free)."""
        by_name = {n.name: n for n in self.nodes}
        done: set[str] = set()
        ordered: list[Node] = []
        while len(ordered) < len(self.nodes):
            ready = [n for n in self.nodes if n.name not in done and all(d in done for d in n.depends_on)]
            if not ready:
                raise ConfigError(f"flow {self.name}: dependency cycle among "
                                  f"{sorted(set(by_name) - done)}")
            ordered.append(ready[0])
            done.add(ready[0].name)
        return ordered


def write_project(directory: Path, project: str, flow: Flow, files: dict[str, str]) -> Path:
    """Write the project files (``files``: relative path -> text) and return the directory."""
    validate_flow(flow.to_dict(), flow.name)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in list(directory.glob("*.flow")) + list(directory.glob("*.project")):
        stale.unlink()
    (directory / f"{project}.project").write_text(FLOW_VERSION_LINE)
    (directory / f"{flow.name}.flow").write_text(yaml.safe_dump(flow.to_dict(), sort_keys=False, width=1000))
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


def validate_project(directory: Path) -> list[str]:
    """The flows of a Flow 2.0 project directory (embedded ones as ``flow:node``), checked as
    Azkaban's loader and upload check them: ConfigError naming every problem."""
    projects = list(directory.glob("*.project"))
    if len(projects) != 1 or projects[0].read_text().strip() != FLOW_VERSION_LINE.strip():
        raise ConfigError(f"{directory}: needs exactly one .project file containing '{FLOW_VERSION_LINE.strip()}'")
    flows = check_project(directory)
    if not flows:
        raise ConfigError(f"{directory}: no .flow file")
    return flows


def read_project(directory: Path) -> Flow:
    """The flow glmix runs from a project directory (one flow of command nodes), validated."""
    flows = [f for f in validate_project(directory) if ":" not in f]
    if len(flows) != 1:
        raise ConfigError(f"{directory}: the local runner runs a project of one flow; this one has {', '.join(flows)}")
    path = next(p for p in flow_files(directory) if p.name == f"{flows[0]}.flow")
    return Flow.from_dict(flows[0], yaml.safe_load(path.read_text()))


def zip_project(directory: Path, target: Path) -> Path:
    """Zip with every file at the archive root (no enclosing folder), fixed timestamps for stable bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(directory)), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return target
