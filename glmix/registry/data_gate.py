"""The data gate: a new training window's statistics (glmix.spark.data_stats) against those of the
production version's training window, which the registry keeps with the version
(``data-stats.json``, written by this gate when that version was trained).

Checks, each against its threshold in the config's ``data_gate`` section: the population
stability index (PSI) and, if set, the Kolmogorov-Smirnov statistic of each of the reference's
most frequent features, on the reference's bins plus a bin for rows without the feature (so a
sparse feature's PSI is bounded by its presence: one in 16% of the rows whose values all moved
reaches about 0.18 — a threshold of 0.1, "a moderate shift", catches it); the share
of rows with a feature the production model never saw; the change of the mean label; the share of
rows without each entity id; the relative change of the row count. With no production version (or
one without statistics) only the checks that need no reference apply.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from glmix.game.report import png_tag  # noqa: E402
from glmix.io.storage import join, publish_atomically, storage_for  # noqa: E402
from glmix.registry.metadata import STATS_FILE, VERSION_STATS  # noqa: E402
from glmix.registry.store import ModelRegistry  # noqa: E402
from glmix.settings import DataGateSettings  # noqa: E402

DECISION_FILE = "data-gate.json"
PSI_FLOOR = 1e-4   # a bin's share below this counts as this (an empty bin would make PSI infinite)


@dataclass(frozen=True)
class ProductionData:
    """The production version's training-window statistics and feature lists (None: none)."""

    version: int | None
    stats: dict[str, Any] | None
    features: str | None


def production_data(registry: ModelRegistry, model: str) -> ProductionData:
    if model not in registry.models() or registry.production(model) is None:
        return ProductionData(None, None, None)
    version = registry.version(model)   # the production version
    storage = storage_for(version.uri)
    path = join(version.uri, VERSION_STATS)
    stats = json.loads(storage.read_bytes(path)) if storage.exists(path) else None
    features = join(version.uri, "features")
    return ProductionData(version.number, stats, features if storage.exists(features) else None)


def shares(stats: dict[str, Any], counts: list[int], present: int) -> np.ndarray:
    """A feature's histogram as shares of the window's rows: its bins, then rows without it."""
    rows = max(int(stats["rows"]), 1)
    histogram: np.ndarray = np.array([*counts, rows - present], dtype=float) / rows
    return histogram


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def binned_ks(expected: np.ndarray, actual: np.ndarray) -> float:
    """The largest gap between the two cumulative shares (rows without the feature first: value 0)."""
    order = [len(expected) - 1, *range(len(expected) - 1)]
    return float(np.max(np.abs(np.cumsum(expected[order]) - np.cumsum(actual[order]))))


def feature_drift(reference: dict[str, Any], window: dict[str, Any]) -> list[dict[str, Any]]:
    """Each reference feature's PSI and KS against the window, worst first."""
    rows = []
    for key, ref in reference["features"].items():
        new = window["at_reference_cuts"].get(key)
        if new is None:
            continue
        expected = shares(reference, ref["counts"], ref["present"])
        actual = shares(window, new["counts"], new["present"])
        rows.append({"feature": key.replace("\t", " "), "key": key, "psi": psi(expected, actual),
                     "ks": binned_ks(expected, actual), "present_reference": expected[:-1].sum(),
                     "present_window": actual[:-1].sum(), "expected": expected.tolist(), "actual": actual.tolist()})
    return sorted(rows, key=lambda r: -r["psi"])


def _check(name: str, value: float | None, threshold: float, detail: str) -> dict[str, Any]:
    passed = value is None or (not math.isnan(value) and value <= threshold)
    return {"check": name, "value": value, "threshold": threshold, "passed": passed, "detail": detail}


def judge(production: ProductionData, window: dict[str, Any], settings: DataGateSettings) -> dict[str, Any]:
    """The gate's decision: every check, the features that drifted, a one-line verdict."""
    rows = max(window["rows"], 1)
    checks = [_check(f"missing {field}", count / rows, settings.missing_ids, f"{count:,} of {rows:,} rows")
              for field, count in window["missing_ids"].items()]
    reference = production.stats
    drift: list[dict[str, Any]] = []
    if reference is not None:
        change = window["rows"] / max(reference["rows"], 1) - 1
        checks.append(_check("row count change", abs(change), settings.row_change,
                             f"{window['rows']:,} rows against {reference['rows']:,} ({change:+.1%})"))
        if window["label_rate"] is not None and reference["label_rate"] is not None:
            moved = window["label_rate"] - reference["label_rate"]
            checks.append(_check("label rate change", abs(moved), settings.label_rate,
                                 f"{window['label_rate']:.4f} against {reference['label_rate']:.4f}"))
        drift = feature_drift(reference, window)
        over = [d["feature"] for d in drift if d["psi"] > settings.psi]
        checks.append(_check("feature PSI (largest)", drift[0]["psi"] if drift else None, settings.psi,
                             f"over the threshold: {', '.join(over)}" if over else f"{len(drift)} features compared"))
        if settings.ks is not None:
            over_ks = [d["feature"] for d in drift if d["ks"] > settings.ks]
            checks.append(_check("feature KS (largest)", max((d["ks"] for d in drift), default=None), settings.ks,
                                 f"over the threshold: {', '.join(over_ks)}" if over_ks else
                                 f"{len(drift)} features compared"))
    unseen = window["rows_with_unseen_features"]
    if unseen is not None:
        checks.append(_check("rows with unseen features", unseen / rows, settings.unseen_share,
                             f"{unseen:,} of {rows:,} rows have a feature version {production.version} never saw"))
    failed = [c for c in checks if not c["passed"]]
    against = (f"production version {production.version}" if reference is not None else
               f"production version {production.version} (no data statistics: only absolute checks)"
               if production.version else "no production version (only absolute checks)")
    verdict = ("passed" if not failed else "failed: " + "; ".join(f"{c['check']} {c['value']:.4g} > {c['threshold']:g}"
                                                                  f" ({c['detail']})" for c in failed))
    return {"passed": not failed, "verdict": f"{verdict} [against {against}]", "action": settings.action,
            "production_version": production.version, "checks": checks,
            "features": [{k: v for k, v in d.items() if k not in ("expected", "actual")} for d in drift],
            "dropped": window["dropped"], "_drift": drift}


def publish(output: str, window: dict[str, Any], decision: dict[str, Any]) -> None:
    """stats.json, data-gate.json and index.html, published atomically into ``output``."""
    drift = decision.pop("_drift")
    with publish_atomically(output) as tmp:
        storage = storage_for(tmp)
        storage.write_bytes(join(tmp, STATS_FILE), json.dumps(window, indent=2).encode())
        storage.write_bytes(join(tmp, DECISION_FILE), json.dumps(decision, indent=2).encode())
        storage.write_bytes(join(tmp, "index.html"), _page(decision, drift).encode())


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _plots(drift: list[dict[str, Any]]) -> str:
    """The reference's and the window's histograms of the (up to four) features that moved most."""
    worst = drift[:4]
    if not worst:
        return ""
    figure, axes = plt.subplots(1, len(worst), figsize=(3.2 * len(worst), 2.8), squeeze=False)
    for axis, d in zip(axes[0], worst, strict=True):
        positions = np.arange(len(d["expected"]))
        axis.bar(positions - 0.2, d["expected"], width=0.4, label="production's window")
        axis.bar(positions + 0.2, d["actual"], width=0.4, label="this window")
        axis.set_xticks(positions, [*[str(i) for i in positions[:-1]], "absent"], fontsize=7)
        axis.set_title(f"{d['feature']} (PSI {d['psi']:.2f})", fontsize=8)
    axes[0][0].set_ylabel("share of rows")
    axes[0][0].legend(fontsize=7)
    return png_tag(figure)


def _page(decision: dict[str, Any], drift: list[dict[str, Any]]) -> str:
    checks = "".join(f"<tr><td>{_cell(c['check'])}</td><td>{_cell(c['value'])}</td><td>{_cell(c['threshold'])}</td>"
                     f"<td>{'yes' if c['passed'] else 'no'}</td><td>{_cell(c['detail'])}</td></tr>"
                     for c in decision["checks"])
    features = "".join(f"<tr><td>{_cell(d['feature'])}</td><td>{d['psi']:.4f}</td><td>{d['ks']:.4f}</td>"
                       f"<td>{d['present_reference']:.3f}</td><td>{d['present_window']:.3f}</td></tr>"
                       for d in drift[:30])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>data gate</title></head><body>"
            f"<h1>Data gate</h1><p>{html.escape(decision['verdict'])} (action: {decision['action']})</p>"
            "<table border='1'><tr><th>check</th><th>value</th><th>threshold</th><th>passed</th><th>detail</th></tr>"
            f"{checks}</table><h2>Features that moved most</h2>{_plots(drift)}"
            "<table border='1'><tr><th>feature</th><th>PSI</th><th>KS</th><th>share present (production)</th>"
            f"<th>share present (this window)</th></tr>{features}</table></body></html>")

