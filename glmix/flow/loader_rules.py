"""The rules of Azkaban's Flow 2.0 loader (``azkaban.project.DirectoryYamlFlowLoader``, 3.58.0),
checked in Python so that ``glmix flow validate`` needs no JVM: what the loader would refuse is
named here with its flow and node, every problem at once.

The whole format: every ``.flow`` file of a project directory and of its sub-directories is a flow
named after the file (two files of one name are an error); a flow has ``config``, ``nodes`` and an
optional ``trigger``; a node has ``name``, ``type``, optional ``config`` (scalars of any YAML type),
``dependsOn``, ``condition``, and, if its type is ``flow``, its own ``nodes`` (an embedded flow,
named ``<flow>:<node>``). Conditions combine ``${job:param}`` with numbers, quoted strings and at
most one job-status macro (``all_success``, ``one_success``, ``all_done``, ...). A trigger is a
Quartz cron schedule (at most once a minute) with optional dependencies (``maxWaitMins`` then
required). tests/test_azkaban_loader.py runs Azkaban's own loader on a corpus of projects and
expects the same verdicts. Two checks are stricter than 3.58.0, as later Azkaban releases are: the
node name ROOT, and repeated node names inside an embedded flow (3.58.0 keeps one silently).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from glmix.errors import ConfigError

NODE_KEYS = ("name", "type", "config", "dependsOn", "condition", "nodes", "trigger")
RESERVED_NODE_NAMES = {"ROOT"}
STATUS_MACROS = ("all_success", "all_failed", "all_done", "one_failed", "one_success")
_MACRO = re.compile(r"(?i)\b(" + "|".join(STATUS_MACROS) + r")\b")
_LITERAL = re.compile(r"\d+|'.*'|\".*\"")
_VARIABLE = re.compile(r"\$\{([^:{}]+):([^:{}]+)\}")
_OPERATORS = re.compile(r"&&|\|\||==|!=|>|>=|<|<=")   # in the loader's order: '>=' splits at '>'
MEMORY_LIMITS = {"Xms": ("1G", 1 << 30), "Xmx": ("2G", 2 << 30)}
_MEMORY = re.compile(r"(\d+)([kKmMgG]?)")


def flow_files(directory: Path) -> Iterator[Path]:
    """The ``.flow`` files of a directory, then those of its sub-directories, as the loader walks."""
    yield from sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(".flow"))
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        yield from flow_files(sub)


def check_project(directory: Path) -> list[str]:
    """The flows Azkaban would load from ``directory`` (embedded ones as ``flow:node``); a
    ConfigError naming every problem where it would refuse the project."""
    problems: list[str] = []
    flows: list[str] = []
    seen: set[str] = set()
    for path in flow_files(directory):
        name = path.name.removesuffix(".flow")
        if name in seen:
            problems.append(f"flow {name}: defined twice ({path.relative_to(directory)} repeats a flow name)")
            continue
        seen.add(name)
        data, problem = _load(path)
        if problem:
            problems.append(f"flow {name} ({path.relative_to(directory)}): {problem}")
            continue
        found = flow_problems(data, name)
        problems += found
        if not found:
            flows += [name, *(f"{name}:{inner}" for inner in _embedded_names(data["nodes"]))]
    if problems:
        raise ConfigError(f"{directory}: " + "; ".join(problems))
    return sorted(flows)


def validate_flow(data: Any, name: str = "flow") -> None:
    """One flow's content (a parsed ``.flow`` file) against the loader's rules."""
    problems = flow_problems(data, name)
    if problems:
        raise ConfigError("; ".join(problems))


def _load(path: Path) -> tuple[Any, str | None]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, f"not valid YAML ({str(exc).splitlines()[0]})"
    if data is None:
        return None, "the file is empty"
    return data, None


def _embedded_names(nodes: list[dict[str, Any]]) -> Iterator[str]:
    for node in nodes:
        if node["type"] == "flow":
            yield node["name"]
            yield from (f"{node['name']}:{inner}" for inner in _embedded_names(node["nodes"]))


def flow_problems(data: Any, flow: str) -> list[str]:
    """Everything the loader would refuse in one flow (and the flows embedded in it)."""
    if not isinstance(data, dict):
        return [f"flow {flow}: a flow file holds a mapping (config, nodes, trigger)"]
    if not isinstance(data.get("nodes"), list):
        return [f"flow {flow}: needs a 'nodes' list"]
    problems = _shape_problems(data, f"flow {flow}")
    if problems:
        return problems
    return _flow_problems(data, flow)


def _shape_problems(bean: dict[str, Any], where: str) -> list[str]:
    """Keys and value types (what SnakeYAML's bean loader refuses), the type of every node."""
    problems = [f"{where}: unknown key {k!r} (a node has {', '.join(NODE_KEYS)})" for k in bean if k not in NODE_KEYS]
    if not isinstance(bean.get("config") or {}, dict):
        problems.append(f"{where}: config must be a mapping")
    if not isinstance(bean.get("dependsOn") or [], list):
        problems.append(f"{where}: dependsOn must be a list of node names")
    nodes = bean.get("nodes")
    if nodes is None:
        return problems
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        return [*problems, f"{where}: nodes must be a list of mappings"]
    for i, node in enumerate(nodes):
        label = f"{where}, node {node.get('name', f'#{i + 1}')}"
        if not node.get("name"):
            problems.append(f"{label}: needs a name")
        if not node.get("type"):
            problems.append(f"{label}: needs a type")
        elif node["type"] == "flow" and not isinstance(node.get("nodes"), list):
            problems.append(f"{label}: an embedded flow (type flow) needs a 'nodes' list")
        problems += _shape_problems(node, label)
    return problems


def _flow_problems(bean: dict[str, Any], flow: str) -> list[str]:
    nodes = bean["nodes"]
    names = [n["name"] for n in nodes]
    where = f"flow {flow}"
    problems = [f"{where}, node {n}: the name is reserved by Azkaban" for n in names if n in RESERVED_NODE_NAMES]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"{where}: node names must be unique ({', '.join(repeated)} repeated)")
    for node in nodes:
        problems += [f"{where}, node {node['name']}: dependsOn names no node {d!r}"
                     for d in node.get("dependsOn") or [] if d not in names]
    if bean.get("trigger") is not None:
        problems += [f"{where}: trigger: {p}" for p in trigger_problems(bean["trigger"])]
    if problems:
        return problems
    edges = {n["name"]: list(n.get("dependsOn") or []) for n in nodes}
    cycle = _cycle(edges)
    if cycle:
        problems.append(f"{where}: dependency cycle {' -> '.join(cycle)}")
    for node in nodes:
        label = f"{where}, node {node['name']}"
        if node.get("condition") is not None:
            problems += [f"{label}: condition: {p}" for p in condition_problems(str(node["condition"]), node["name"],
                                                                                 edges)]
        problems += [f"{label}: {p}" for p in _memory_problems(node.get("config") or {})]
        if node["type"] == "flow":
            problems += _flow_problems(node, f"{flow}:{node['name']}")
    return problems


def condition_problems(condition: str, node: str, edges: dict[str, list[str]]) -> list[str]:
    """The loader's reading of a condition: operands split at the operators, each a status macro
    (at most one), a number, a quoted string, or ``${job:param}`` of a job that is not downstream."""
    operands = _OPERATORS.split(re.sub(r"\s+|\(|\)", "", condition))
    while operands and operands[-1] == "":   # as Java's String.split drops trailing empty strings
        operands.pop()
    problems, macros = [], 0
    for operand in operands:
        if _MACRO.fullmatch(operand):
            macros += 1
            if macros == 2:
                problems.append("at most one job-status macro (all_success, one_success, all_done, ...)")
            continue
        operand = operand.removeprefix("!")
        if not operand:
            problems.append("an operand is empty")
        elif not _LITERAL.fullmatch(operand):
            variable = _VARIABLE.fullmatch(operand)
            if variable is None:
                problems.append(f"cannot read {operand!r}: use ${{job:param}}, numbers, quoted strings, "
                                f"one of {', '.join(STATUS_MACROS)}, and && || == != > <")
            elif variable.group(1) not in edges:
                problems.append(f"job {variable.group(1)} is not in the flow")
            elif _depends_on(variable.group(1), node, edges):
                problems.append(f"job {variable.group(1)} runs after this node (a condition looks upstream)")
    return problems


def _depends_on(start: str, target: str, edges: dict[str, list[str]]) -> bool:
    stack, seen = list(edges.get(start, [])), set()
    while stack:
        name = stack.pop()
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            stack += edges.get(name, [])
    return False


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


def _memory_problems(config: dict[str, Any]) -> list[str]:
    """Xms above 1G or Xmx above 2G (the loader's defaults) unless the value is a ${variable}."""
    problems = []
    for key, (limit, most) in MEMORY_LIMITS.items():
        value = str(config.get(key, "")).strip()
        match = _MEMORY.fullmatch(value)
        if match and int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[
                match.group(2).lower()] > most:
            problems.append(f"{key} {value} exceeds the allowed {limit}")
    return problems


def trigger_problems(trigger: Any) -> list[str]:
    """A flow trigger: a cron schedule of type and value only, dependencies named once and defined
    once, maxWaitMins of at least 1 where there are dependencies."""
    if not isinstance(trigger, dict):
        return ["must be a mapping (schedule, triggerDependencies, maxWaitMins)"]
    schedule = trigger.get("schedule")
    if not isinstance(schedule, dict):
        return ["needs a schedule (type: cron, value: a cron expression)"]
    problems = []
    if schedule.get("type") != "cron":
        problems.append("schedule type must be cron")
    elif not is_quartz_cron(str(schedule.get("value", ""))):
        problems.append(f"schedule value {schedule.get('value')!r} is not a Quartz cron expression "
                        "(seconds minutes hours day-of-month month day-of-week [year])")
    elif str(schedule["value"]).split()[0] != "0":
        problems.append("the schedule may fire at most once a minute (its seconds field must be 0)")
    elif set(schedule) != {"type", "value"}:
        problems.append("schedule holds type and value only")
    dependencies = trigger.get("triggerDependencies") or []
    names = [d.get("name") for d in dependencies]
    problems += [f"dependency #{i + 1}: needs a name and a type" for i, d in enumerate(dependencies)
                 if not d.get("name") or not d.get("type")]
    problems += [f"dependency name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    definitions = [(d.get("type"), d.get("params")) for d in dependencies]
    problems += [f"dependency {d.get('name')!r} repeats the type and params of an earlier one"
                 for i, d in enumerate(dependencies) if (d.get("type"), d.get("params")) in definitions[:i]]
    wait = trigger.get("maxWaitMins")
    if dependencies and wait is None:
        problems.append("maxWaitMins is needed when there are dependencies")
    elif wait is not None and (not isinstance(wait, int) or wait < 1):
        problems.append("maxWaitMins must be at least 1")
    return problems


_CRON_FIELDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7), (1970, 2199)]
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"


def is_quartz_cron(expression: str) -> bool:
    """Quartz's cron syntax (what Azkaban's CronExpression accepts): 6 or 7 fields; lists, ranges,
    steps and names; '?' in exactly one of day-of-month and day-of-week; L, W and # where Quartz
    allows them."""
    fields = expression.split()
    if len(fields) not in (6, 7):
        return False
    if (fields[3] == "?") == (fields[5] == "?"):
        return False
    return all(_cron_field_ok(value, k) for k, value in enumerate(fields))


def _cron_field_ok(value: str, k: int) -> bool:
    low, high = _CRON_FIELDS[k]
    if value == "?":
        return k in (3, 5)
    if k == 3 and re.fullmatch(r"L(-\d{1,2})?|LW|\d{1,2}W", value):
        return True
    if k == 5 and re.fullmatch(r"[1-7]L|[1-7]#[1-5]|L", value):
        return True
    names = _MONTHS if k == 4 else _DAYS if k == 5 else None
    for part in value.split(","):
        base, _, step = part.partition("/")
        if step and not (step.isdigit() and int(step) > 0):
            return False
        if base == "*":
            continue
        ends = base.split("-")
        if len(ends) > 2:
            return False
        for end in ends:
            if names and re.fullmatch(names, end.upper()):
                continue
            if not end.isdigit() or not low <= int(end) <= high:
                return False
    return True
