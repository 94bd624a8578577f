"""Azkaban Flow 2.0 projects: write them, check them against Azkaban's loader rules, zip them.

A project is a directory with ``<name>.project`` (``azkaban-flow-version: 2.0``, unquoted, or
Azkaban reads the flow as 1.0), one ``<flow>.flow`` YAML file (``config`` plus ``nodes``, each
with ``name``, ``type``, ``config`` and optional ``dependsOn``) and any files the commands use.
The zip has those files at its root, as Azkaban's upload expects.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glmix.errors import ConfigError

FLOW_VERSION_LINE = "azkaban-flow-version: 2.0\n"
RESERVED_NODE_NAMES = {"ROOT"}


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

    def to_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "nodes": [n.to_dict() for n in self.nodes]}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Flow:
        validate_flow(data, name)
        nodes = [Node(n["name"], n["config"]["command"], list(n.get("dependsOn", [])),
                      {k: v for k, v in n["config"].items() if k != "command"}) for n in data["nodes"]]
        return cls(name, nodes, dict(data.get("config") or {}))

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


def validate_flow(data: Any, where: str = "flow") -> None:
    """Azkaban's loader rules, checked before upload: every problem named, all at once."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
        raise ConfigError(f"{where}: a flow needs a non-empty 'nodes' list")
    problems = _string_config_problems(data.get("config") or {}, "config.{key}:")
    names: list[str] = []
    for i, node in enumerate(data["nodes"]):
        if not isinstance(node, dict) or not node.get("name"):
            problems.append(f"nodes[{i}]: needs a name")
            continue
        names.append(node["name"])
        problems += _node_problems(i, node)
    problems += _reference_problems(data["nodes"], names)
    if not problems:
        cycle = _cycle({n["name"]: list(n.get("dependsOn", [])) for n in data["nodes"]})
        if cycle:
            problems.append(f"dependency cycle: {' -> '.join(cycle)}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def _string_config_problems(config: dict[str, Any], where: str) -> list[str]:
    """``where``: how to name a key, e.g. ``config.{key}:``."""
    return [f"{where.format(key=key)} must be a string (quote it), got {type(value).__name__}"
            for key, value in config.items() if not isinstance(value, str)]


def _node_problems(i: int, node: dict[str, Any]) -> list[str]:
    name, config = node["name"], node.get("config") or {}
    problems = [f"nodes[{i}]: the name {name} is reserved by Azkaban"] if name in RESERVED_NODE_NAMES else []
    if not node.get("type"):
        problems.append(f"node {name}: needs a type")
    if node.get("type") == "command" and not config.get("command"):
        problems.append(f"node {name}: a command job needs config.command")
    return problems + _string_config_problems(config, f"node {name}: config.{{key}}")


def _reference_problems(nodes: list[Any], names: list[str]) -> list[str]:
    """Duplicate names, and dependencies on nodes that do not exist."""
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems = [f"node names must be unique: {', '.join(duplicates)}"] if duplicates else []
    known = set(names)
    for node in nodes:
        for dependency in node.get("dependsOn", []) if isinstance(node, dict) else []:
            if dependency not in known:
                problems.append(f"node {node.get('name')}: dependsOn names no node {dependency!r}")
    return problems


def _cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in the dependsOn graph, as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dependency in edges.get(name, []):
            if state.get(dependency) == 1:
                return path[path.index(dependency):] + [dependency]
            if dependency not in state and (found := visit(dependency)):
                return found
        state[name] = 2
        path.pop()
        return None

    for name in edges:
        if name not in state and (found := visit(name)):
            return found
    return None


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


def read_project(directory: Path) -> Flow:
    """The (single) flow of a project directory, validated."""
    projects = list(directory.glob("*.project"))
    if len(projects) != 1 or projects[0].read_text().strip() != FLOW_VERSION_LINE.strip():
        raise ConfigError(f"{directory}: needs exactly one .project file containing '{FLOW_VERSION_LINE.strip()}'")
    flows = list(directory.glob("*.flow"))
    if len(flows) != 1:
        raise ConfigError(f"{directory}: expected one .flow file, found {len(flows)}")
    data = yaml.safe_load(flows[0].read_text())
    return Flow.from_dict(flows[0].stem, data)


def zip_project(directory: Path, target: Path) -> Path:
    """Zip with every file at the archive root (no enclosing folder), fixed timestamps for stable bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(directory)), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return target
