"""Azkaban Flow 2.0 projects covering the format, valid and invalid, written for these tests: each
is a directory of ``.flow`` files (some in sub-directories). tests/test_azkaban_loader.py loads
every one with Azkaban's own loader and with ``glmix flow validate`` and expects the same verdict
and the same flows."""

from __future__ import annotations

from pathlib import Path

CMD = "type: command\n    config:\n      command: echo hi"


def _flow(*nodes: str, head: str = "") -> str:
    return head + "nodes:\n" + "".join(nodes)


def _node(name: str, *depends: str, extra: str = "", body: str = CMD) -> str:
    text = f"  - name: {name}\n    {body}\n"
    if depends:
        text += f"    dependsOn: [{', '.join(depends)}]\n"
    return text + extra


VALID: dict[str, dict[str, str]] = {
    "one-flow": {"a.flow": _flow(_node("x"), _node("y", "x"))},
    "two-flows": {"a.flow": _flow(_node("x")), "b.flow": _flow(_node("x"), _node("y", "x"))},
    "nested-directories": {"a.flow": _flow(_node("x")), "sub/deeper/b.flow": _flow(_node("x"))},
    "noop-without-config": {"a.flow": _flow(_node("x"), _node("done", "x", body="type: noop"))},
    "embedded-flow": {"a.flow": _flow(_node("x"), _node(
        "inner", "x", body="type: flow\n    nodes:\n      - name: p\n        type: command\n        config: "
                           "{command: echo p}\n      - name: q\n        type: noop\n        dependsOn: [p]"),
        _node("after", "inner"))},
    "embedded-in-embedded": {"a.flow": _flow(_node(
        "outer", body="type: flow\n    nodes:\n      - name: mid\n        type: flow\n        nodes:\n"
                      "          - name: leaf\n            type: noop"))},
    "numbers-and-booleans-in-config": {"a.flow": _flow(
        _node("x", body="type: command\n    config:\n      command: echo hi\n      retries: 2\n"
                        "      retry.backoff: 30000\n      failure.emails.enabled: true\n      ratio: 0.5"),
        head="config:\n  user.to.proxy: azkaban\n  retries: 3\n  enabled: false\n")},
    "conditions": {"a.flow": _flow(
        _node("x"), _node("y"),
        _node("any", "x", "y", extra="    condition: one_success\n"),
        _node("always", "x", "y", extra="    condition: all_done\n"),
        _node("param", "x", extra="    condition: ${x:answer} == 1 && all_success\n"),
        _node("quoted", "x", extra="    condition: (${x:state} == \"ok\") || ${x:state} != 'bad'\n"),
        _node("negated", "x", extra="    condition: \"!${x:skip}\"\n"))},
    "cron-trigger": {"a.flow": _flow(_node("x"), head="trigger:\n  schedule:\n    type: cron\n"
                                                       "    value: 0 30 2 ? * *\n")},
    "trigger-with-dependencies": {"a.flow": _flow(_node("x"), head=(
        "trigger:\n  maxWaitMins: 60\n  schedule:\n    type: cron\n    value: 0 0 1 ? * *\n"
        "  triggerDependencies:\n    - name: day\n      type: dali-dataset\n      params: {view: a, window: 1}\n"
        "    - name: hour\n      type: dali-dataset\n      params: {view: b, window: 1}\n"))},
    "diamond": {"a.flow": _flow(_node("a"), _node("b", "a"), _node("c", "a"), _node("d", "b", "c"))},
    "memory-within-limits": {"a.flow": _flow(_node(
        "x", body="type: java\n    config:\n      Xms: 512M\n      Xmx: 2G"))},
}

INVALID: dict[str, dict[str, str]] = {
    "duplicate-node-names": {"a.flow": _flow(_node("x"), _node("x"))},
    "undefined-dependency": {"a.flow": _flow(_node("x", "nowhere"))},
    "cycle": {"a.flow": _flow(_node("a", "c"), _node("b", "a"), _node("c", "b"))},
    "self-cycle": {"a.flow": _flow(_node("a", "a"))},
    "cycle-in-embedded-flow": {"a.flow": _flow(_node(
        "inner", body="type: flow\n    nodes:\n      - name: p\n        type: noop\n        dependsOn: [q]\n"
                      "      - name: q\n        type: noop\n        dependsOn: [p]"))},
    "undefined-dependency-in-embedded-flow": {"a.flow": _flow(_node(
        "inner", body="type: flow\n    nodes:\n      - name: p\n        type: noop\n        dependsOn: [zz]"))},
    "same-flow-name-twice": {"a.flow": _flow(_node("x")), "sub/a.flow": _flow(_node("y"))},
    "node-without-type": {"a.flow": _flow(_node("x", body="config:\n      command: echo hi"))},
    "embedded-flow-without-nodes": {"a.flow": _flow(_node("inner", body="type: flow"))},
    "no-nodes": {"a.flow": "config:\n  a: b\n"},
    "empty-file": {"a.flow": ""},
    "not-yaml": {"a.flow": "nodes: [\n"},
    "unknown-key": {"a.flow": _flow(_node("x", extra="    retries: 3\n"))},
    "two-status-macros": {"a.flow": _flow(_node("x"), _node("y", "x", extra="    condition: all_done && "
                                                                             "one_success\n"))},
    "condition-on-unknown-job": {"a.flow": _flow(_node("x"), _node("y", "x", extra="    condition: "
                                                                                  "${nobody:v} == 1\n"))},
    "condition-on-descendant": {"a.flow": _flow(_node("x", extra="    condition: ${y:v} == 1\n"),
                                                _node("y", "x"))},
    "condition-unparsable": {"a.flow": _flow(_node("x"), _node("y", "x", extra="    condition: x == 1\n"))},
    "condition-empty-operand": {"a.flow": _flow(_node("x"), _node("y", "x", extra="    condition: \"== 1\"\n"))},
    "condition-greater-or-equal": {"a.flow": _flow(_node("x"), _node("y", "x", extra="    condition: "
                                                                                    "${x:v} >= 1\n"))},
    "trigger-not-cron": {"a.flow": _flow(_node("x"), head="trigger:\n  schedule:\n    type: daily\n"
                                                          "    value: 0 0 1 ? * *\n")},
    "trigger-bad-cron": {"a.flow": _flow(_node("x"), head="trigger:\n  schedule:\n    type: cron\n"
                                                          "    value: every day\n")},
    "trigger-every-second": {"a.flow": _flow(_node("x"), head="trigger:\n  schedule:\n    type: cron\n"
                                                              "    value: '* * * ? * *'\n")},
    "trigger-dependencies-without-wait": {"a.flow": _flow(_node("x"), head=(
        "trigger:\n  schedule:\n    type: cron\n    value: 0 0 1 ? * *\n"
        "  triggerDependencies:\n    - name: day\n      type: dali-dataset\n      params: {view: a}\n"))},
    "trigger-duplicate-dependency-names": {"a.flow": _flow(_node("x"), head=(
        "trigger:\n  maxWaitMins: 10\n  schedule:\n    type: cron\n    value: 0 0 1 ? * *\n"
        "  triggerDependencies:\n    - name: day\n      type: t\n      params: {view: a}\n"
        "    - name: day\n      type: t\n      params: {view: b}\n"))},
    "trigger-duplicate-dependency-definitions": {"a.flow": _flow(_node("x"), head=(
        "trigger:\n  maxWaitMins: 10\n  schedule:\n    type: cron\n    value: 0 0 1 ? * *\n"
        "  triggerDependencies:\n    - name: a\n      type: t\n      params: {view: a}\n"
        "    - name: b\n      type: t\n      params: {view: a}\n"))},
    "xmx-over-the-limit": {"a.flow": _flow(_node("x", body="type: java\n    config:\n      Xmx: 8G"))},
}


def write_corpus(root: Path) -> dict[str, Path]:
    """Every project under ``root``; returns name -> directory."""
    projects = {}
    for name, files in {**VALID, **INVALID}.items():
        for relative, text in files.items():
            path = root / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        projects[name] = root / name
    return projects
