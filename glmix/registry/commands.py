"""``glmix models ...``: the registry in the terminal, as tables.

    glmix models register --registry R CONFIG [--model NAME] [--parent N]   a finished flow's best model
    glmix models list --registry R [MODEL]
    glmix models show --registry R MODEL [VERSION]          (default: production)
    glmix models diff --registry R MODEL V1 V2
    glmix models promote --registry R MODEL VERSION
    glmix models rollback --registry R MODEL
    glmix models archive --registry R MODEL VERSION [--reason TEXT]

``--registry`` defaults to ``$GLMIX_REGISTRY``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from glmix.errors import ConfigError
from glmix.registry.metadata import flow_metadata, kept_files
from glmix.registry.store import ModelRegistry, Version


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``models`` command and its actions, under the ``glmix`` parser's subcommands ``sub``."""
    models: argparse.ArgumentParser = sub.add_parser("models", help="the model registry: register, list, show, diff, promote, roll back")
    actions = models.add_subparsers(dest="action", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help)
        parser.add_argument("--registry", default=os.environ.get("GLMIX_REGISTRY"),
                            help="the registry's root (local or hdfs://); default $GLMIX_REGISTRY")
        return parser

    register = action("register", "register the model a finished flow chose (its best/) as a new candidate version")
    register.add_argument("config")
    register.add_argument("--model", help="registry model name (default: the config's name)")
    register.add_argument("--parent", type=int, help="the version this one was warm-started from")
    register.add_argument("--run-date", help="the day the run trained for (YYYY-MM-DD)")
    listing = action("list", "models, or one model's versions")
    listing.add_argument("model", nargs="?")
    show = action("show", "one version's metadata (default: production)")
    show.add_argument("model")
    show.add_argument("version", nargs="?", type=int)
    diff = action("diff", "what differs between two versions: config, inputs, rows, features, metrics")
    diff.add_argument("model")
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)
    promote = action("promote", "make a candidate version production")
    promote.add_argument("model")
    promote.add_argument("version", type=int)
    rollback = action("rollback", "production back to the version before the current one")
    rollback.add_argument("model")
    archive = action("archive", "retire a version that is not production")
    archive.add_argument("model")
    archive.add_argument("version", type=int)
    archive.add_argument("--reason", default="archived by hand")
    return models


def run(args: argparse.Namespace, console: Console) -> None:
    if not args.registry:
        raise ConfigError("no registry: pass --registry or set GLMIX_REGISTRY")
    registry = ModelRegistry(args.registry)
    if args.action == "register":
        from glmix.game.config import GameConfig

        config = GameConfig.from_yaml(args.config).resolved(Path.cwd())
        metadata, features = flow_metadata(config, args.run_date)
        v = registry.register_model_dir(args.model or config.name, metadata["source"], metadata, features, args.parent,
                                        kept_files(config))
        console.print(f"registered {v.model} version {v.number} ({v.state}): {v.uri}", highlight=False)
    elif args.action == "list":
        console.print(versions_table(registry, args.model) if args.model else models_table(registry))
    elif args.action == "show":
        console.print(show_table(registry.version(args.model, args.version)))
    elif args.action == "diff":
        console.print(diff_table(registry, registry.version(args.model, args.v1), registry.version(args.model, args.v2)))
    elif args.action == "promote":
        v = registry.promote(args.model, args.version)
        console.print(f"{v.model}: production is version {v.number}", highlight=False)
    elif args.action == "rollback":
        v = registry.rollback(args.model)
        console.print(f"{v.model}: rolled back; production is version {v.number}", highlight=False)
    elif args.action == "archive":
        registry.set_state(args.model, args.version, "archived", args.reason)
        console.print(f"{args.model}: version {args.version} archived", highlight=False)


def _metric(v: Version, name: str) -> str:
    value = v.metadata.get("metrics", {}).get(name)
    return "-" if value is None else f"{value:.4f}"


def models_table(registry: ModelRegistry) -> Table:
    table = Table(title=f"models in {registry.root}")
    for column in ("model", "versions", "production", "latest"):
        table.add_column(column)
    for model in registry.models():
        versions = registry.versions(model)
        production = registry.production(model)
        table.add_row(model, str(len(versions)), "-" if production is None else str(production),
                      str(versions[-1].number) if versions else "-")
    return table


def versions_table(registry: ModelRegistry, model: str) -> Table:
    versions = registry.versions(model)
    metric = next((v.metadata["primary_metric"] for v in reversed(versions) if v.metadata.get("primary_metric")), "metric")
    table = Table(title=f"{model} in {registry.root}")
    for column in ("version", "state", "created (UTC)", metric, "rows", "parent"):
        table.add_column(column, justify="left" if column == "state" else "right", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for v in versions:
        rows = v.metadata.get("rows", {}).get("train_used")
        created = str(v.metadata.get("created", "-")).replace("T", " ")[:16]
        table.add_row(str(v.number), v.state, created, _metric(v, metric),
                      "-" if rows is None else f"{rows:,}", str(v.metadata.get("parent_version") or "-"), v.reason)
    return table


def _facts(v: Version) -> dict[str, str]:
    m = v.metadata
    facts = {"state": f"{v.state} ({v.reason})", "created": m.get("created", "-"), "location": v.uri,
             "config digest": m.get("config_digest", "-"), "train input": str(m.get("inputs", {}).get("train")),
             "validation input": str(m.get("inputs", {}).get("validation")),
             "run date": str(m.get("inputs", {}).get("run_date") or "-"),
             "train rows used": str(m.get("rows", {}).get("train_used")),
             "parent version": str(m.get("parent_version") or "-"),
             "code": f"glmix {m.get('code', {}).get('glmix')} {m.get('code', {}).get('commit') or ''}".strip()}
    facts.update({f"metric {k}": "-" if val is None else f"{val:.6g}" for k, val in m.get("metrics", {}).items()})
    facts.update({f"shard {s}": f"{d['features']:,} features, digest {d['digest']}" for s, d in m.get("shards", {}).items()})
    return facts


def show_table(v: Version) -> Table:
    table = Table(title=f"{v.model} version {v.number}")
    table.add_column("")
    table.add_column("value")
    for key, value in _facts(v).items():
        table.add_row(key, value)
    return table


def _flat(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(value, default=str)}


def diff_table(registry: ModelRegistry, a: Version, b: Version) -> Table:
    table = Table(title=f"{a.model}: version {a.number} -> {b.number}")
    for column in ("what", f"v{a.number}", f"v{b.number}"):
        table.add_column(column)
    fa, fb = _facts(a), _facts(b)
    for key in dict.fromkeys([*fa, *fb]):
        if key not in ("location", "created") and fa.get(key) != fb.get(key):
            table.add_row(key, fa.get(key, "-"), fb.get(key, "-"))
    ca, cb = _flat(a.metadata.get("config", {})), _flat(b.metadata.get("config", {}))
    for key in sorted(set(ca) | set(cb)):
        if ca.get(key) != cb.get(key):
            table.add_row(f"config {key}", ca.get(key, "-"), cb.get(key, "-"))
    features_a, features_b = registry.features(a), registry.features(b)
    for shard in sorted(set(features_a) | set(features_b)):
        before, after = set(features_a.get(shard, [])), set(features_b.get(shard, []))
        if before != after:
            added, removed = sorted(after - before), sorted(before - after)
            table.add_row(f"shard {shard} features", f"{len(removed):,} removed: {_few(removed)}",
                          f"{len(added):,} added: {_few(added)}")
    return table


def _few(keys: list[tuple[str, str]], shown: int = 3) -> str:
    names = [f"{n}:{t}" if t else n for n, t in keys[:shown]]
    return ", ".join(names) + (" ..." if len(keys) > shown else "")
