"""A flow's stages around the registry: which model is production as the run starts, and the model gate.

    python -m glmix.registry.gate production CONFIG.yaml   -> OUTPUT/production.json
    python -m glmix.registry.gate decide CONFIG.yaml [RUN_DATE]

``production`` writes ``{"version", "model"}`` for the scoring job to score (the registry's
production version; with none yet, the candidate itself, so the flow's shape never depends on the
registry's state); retraining trainers start from it (glmix.train.warm_start). After select-best
the flow scores that model on this run's validation data and evaluates it with the config's
evaluators (jobs/score ``--model-pointer``, jobs/evaluate).

``decide`` registers the candidate (the flow's ``best/``) and compares it with production on the
same rows: promoted when its primary metric (and, with ``registry.grouped``, each grouped metric)
is no worse than production's by more than ``registry.tolerance``; otherwise rejected with the
reason, production untouched, and the stage fails so the flow shows it. The decision and a report
of how the candidate's scores moved against production's on the same rows (quantiles, the
two-sample Kolmogorov-Smirnov statistic, both histograms) go to ``OUTPUT/gate/``.
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from scipy.stats import ks_2samp

from glmix.errors import ConfigError, GlmixError, run_command
from glmix.game.config import GameConfig
from glmix.game.plan import GamePlan
from glmix.game.report import labels_and_scores, score_histograms
from glmix.glm.metrics import Evaluator
from glmix.io.storage import join, publish_atomically, storage_for, write_file_atomically
from glmix.registry.metadata import flow_metadata, kept_files
from glmix.registry.store import ModelRegistry

METRICS_FILE = "metrics.json"


def _registry(config: GameConfig) -> tuple[ModelRegistry, str]:
    if config.registry is None:
        raise ConfigError(f"{config.name}: no registry section in the config")
    return ModelRegistry(config.registry.root), config.registry.model or config.name


def write_production_pointer(config: GameConfig) -> str:
    registry, model = _registry(config)
    plan = GamePlan(config)
    number = registry.production(model) if model in registry.models() else None
    pointer = {"version": number, "model": registry.version(model, number).model_uri if number else plan.best}
    write_file_atomically(plan.production_pointer, json.dumps(pointer).encode())
    return f"production of {model}: " + (f"version {number}" if number else "none yet (the candidate scores in its place)")


def _metrics(directory: str) -> dict[str, float | None]:
    path = join(directory, METRICS_FILE)
    metrics: dict[str, float | None] = json.loads(storage_for(path).read_bytes(path))["metrics"]
    return metrics


def compare(config: GameConfig, candidate: dict[str, float | None],
            production: dict[str, float | None]) -> tuple[bool, list[dict[str, Any]]]:
    """Whether the candidate passes, and each gated metric's values and verdict."""
    assert config.registry is not None
    gated = [config.primary_metric] + [e for e in config.evaluators[1:] if config.registry.grouped
                                       and Evaluator.parse(e).group]
    rows = []
    for name in gated:
        c, p = candidate.get(name), production.get(name)
        sign = 1.0 if Evaluator.parse(name).higher_is_better else -1.0
        ok = c is not None and (p is None or sign * (c - p) >= -config.registry.tolerance)
        rows.append({"metric": name, "candidate": c, "production": p, "passed": ok})
    return all(r["passed"] for r in rows), rows


def _distribution_report(candidate_scores: str, production_scores: str) -> tuple[dict[str, Any], str]:
    _, c = labels_and_scores(candidate_scores)
    _, p = labels_and_scores(production_scores)
    quantiles = [0.01, 0.1, 0.5, 0.9, 0.99]
    shift = {"rows": int(len(c)), "ks_statistic": float(ks_2samp(c, p).statistic),
             "mean_candidate": float(c.mean()), "mean_production": float(p.mean()),
             "quantiles": {str(q): [float(np.quantile(c, q)), float(np.quantile(p, q))] for q in quantiles}}
    return shift, score_histograms({"production": p, "candidate": c})


def decide(config: GameConfig, run_date: str | None = None) -> str:
    registry, model = _registry(config)
    assert config.registry is not None
    plan = GamePlan(config)
    pointer = json.loads(storage_for(plan.production_pointer).read_bytes(plan.production_pointer))
    metadata, features = flow_metadata(config, run_date)
    summary = json.loads(storage_for(plan.summary).read_bytes(plan.summary))
    best = plan.steps()[summary["best"]]
    candidate = registry.register_model_dir(model, plan.best, metadata, features, files=kept_files(config))
    if pointer["version"] is None:
        passed, rows, reason = True, list[dict[str, Any]](), "the first version"
    else:
        passed, rows = compare(config, _metrics(best.metrics), _metrics(plan.production_metrics))
        reason = "; ".join(f"{r['metric']} {r['candidate']:.6g} vs production {r['production']:.6g}"
                           if r["candidate"] is not None and r["production"] is not None
                           else f"{r['metric']} undefined" for r in rows)
    shift, plot = ({}, "") if pointer["version"] is None else _distribution_report(
        join(best.scores, "validation"), join(plan.production_scores, "validation"))
    tolerance = config.registry.tolerance
    verdict = (f"promoted: {reason}" if passed and config.registry.promote else
               f"passed (left a candidate: promote is off): {reason}" if passed else
               f"rejected: {reason} (tolerance {tolerance:g})")
    if passed and config.registry.promote:
        registry.promote(model, candidate.number, f"model gate: {reason}")
    elif not passed:
        registry.set_state(model, candidate.number, "rejected", f"model gate: {reason} (tolerance {tolerance:g})")
    decision = {"model": model, "candidate_version": candidate.number, "production_version": pointer["version"],
                "passed": passed, "verdict": verdict, "metrics": rows, "tolerance": tolerance, "score_shift": shift}
    with publish_atomically(plan.gate) as tmp:
        storage_for(tmp).write_bytes(join(tmp, "gate.json"), json.dumps(decision, indent=2).encode())
        storage_for(tmp).write_bytes(join(tmp, "index.html"), _page(decision, plot).encode())
    message = f"model gate: {model} version {candidate.number} {verdict}; report {join(plan.gate, 'index.html')}"
    if not passed:
        raise GlmixError(message)
    return message


def _page(decision: dict[str, Any], plot: str) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else html.escape(str(value))

    rows = "".join(f"<tr><td>{cell(r['metric'])}</td><td>{cell(r['candidate'])}</td><td>{cell(r['production'])}</td>"
                   f"<td>{'yes' if r['passed'] else 'no'}</td></tr>" for r in decision["metrics"])
    shift = decision["score_shift"]
    moved = (f"<p>{shift['rows']:,} validation rows: mean score {shift['mean_candidate']:.4f} (candidate) vs "
             f"{shift['mean_production']:.4f} (production); Kolmogorov-Smirnov statistic {shift['ks_statistic']:.4f}</p>"
             if shift else "<p>No production version to compare with.</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>model gate</title></head><body>"
            f"<h1>Model gate: {html.escape(decision['model'])} version {decision['candidate_version']}</h1>"
            f"<p>{html.escape(decision['verdict'])}</p><table border='1'><tr><th>metric</th><th>candidate</th>"
            f"<th>production (version {cell(decision['production_version'])})</th><th>passed</th></tr>{rows}</table>"
            f"<h2>Scores against production on the same rows</h2>{moved}{plot}</body></html>")


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] not in ("production", "decide"):
        print("usage: python -m glmix.registry.gate (production | decide) CONFIG.yaml [RUN_DATE]", file=out or sys.stderr)
        return 2
    path = (cwd or Path()) / args[1]

    def body() -> str:
        config = GameConfig.from_yaml(path)
        return write_production_pointer(config) if args[0] == "production" else decide(config, *args[2:])

    return run_command(body, out)


if __name__ == "__main__":
    sys.exit(main())
