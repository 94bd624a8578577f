"""The model report: one self-contained HTML page with the metrics table and plots.

    python -m glmix.game.report CONFIG.yaml      -> OUTPUT/report/index.html, model-summary.json

Plots: ROC and calibration of the best model on the validation data (with the Hosmer-Lemeshow
statistic over deciles of predicted probability), every evaluator after each coordinate update,
the distribution of each coordinate's coefficients, and the number of training rows per entity; the
model summary's tables (glmix.model.summary), whose every coefficient is in model-summary.json.
Images are embedded PNGs, so the page can be copied anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import chi2  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from glmix.game.config import GameConfig, config_command  # noqa: E402
from glmix.game.plan import GamePlan  # noqa: E402
from glmix.glm.metrics import auc  # noqa: E402
from glmix.io.avro import read_avro_records  # noqa: E402
from glmix.io.parquet import read_parquet  # noqa: E402
from glmix.io.storage import join, storage_for, write_file_atomically  # noqa: E402
from glmix.model.summary import FixedEffectSummary, ModelSummary, RandomEffectSummary, model_summary  # noqa: E402

SUMMARY_FILE = "model-summary.json"


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, groups: int = 10) -> tuple[float, float, list[tuple[Any, ...]]]:
    """HL statistic, its p-value (chi-square, groups - 2 dof) and (mean predicted, observed rate) per group."""
    order = np.argsort(p, kind="stable")
    statistic, bins = 0.0, []
    for chunk in np.array_split(order, groups):
        if len(chunk) == 0:
            continue
        expected, observed, n = p[chunk].sum(), y[chunk].sum(), len(chunk)
        mean = expected / n
        if 0 < mean < 1:
            statistic += (observed - expected) ** 2 / (n * mean * (1 - mean))
        bins.append((mean, observed / n, n))
    return float(statistic), float(chi2.sf(statistic, max(len(bins) - 2, 1))), bins


def png_tag(figure: Any) -> str:
    """A matplotlib figure as an inline <img> (one self-contained HTML file)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def score_histograms(scores: dict[str, np.ndarray]) -> str:
    """Overlaid histograms of several score sets on the same rows (e.g. a candidate and production)."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(min(s.min() for s in scores.values()), max(s.max() for s in scores.values()), 50).tolist()
    for name, values in scores.items():
        axes.hist(values, bins=bins, alpha=0.5, label=name)
    axes.set_xlabel("predictionScore (validation rows)")
    axes.legend()
    return png_tag(figure)


def labels_and_scores(uri: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictionScore of the ScoringResult Avro under ``uri``."""
    records = list(read_avro_records(uri))
    return (np.array([r["label"] for r in records], dtype=float),
            np.array([r["predictionScore"] for r in records], dtype=float))


def _metric_table(summary: dict[str, Any]) -> str:
    names = list(summary["steps"][0]["metrics"])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["run", "pass", "after", *names])
    body = []
    for i, step in enumerate(summary["steps"]):
        cells = [step["run"], step["pass"], html.escape(step["coordinate"])]
        cells += ["-" if step["metrics"][n] is None else f"{step['metrics'][n]:.4f}" for n in names]
        style = ' class="best"' if i == summary["best"] else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _metric_plot(summary: dict[str, Any]) -> str:
    steps = summary["steps"]
    figure, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"r{s['run']} p{s['pass']}\n{s['coordinate']}" for s in steps]
    for name in steps[0]["metrics"]:
        values = [np.nan if s["metrics"][name] is None else s["metrics"][name] for s in steps]
        ax.plot(range(len(steps)), values, marker="o", label=name)
    ax.set_xticks(range(len(steps)), labels, fontsize=7)
    ax.set_title("validation metrics after each coordinate update")
    ax.legend(fontsize=7)
    return png_tag(figure)


def roc_figure(y: np.ndarray, margin: np.ndarray, title: str = "ROC (validation)") -> Figure:
    fpr, tpr, _ = roc_curve(y, margin)
    figure, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUC {auc(y, margin):.4f}")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return figure


def calibration_figure(y: np.ndarray, margin: np.ndarray) -> tuple[Figure, float, float, int]:
    """Observed against predicted positive rate by decile; with the Hosmer-Lemeshow statistic, its
    p-value and the number of deciles."""
    statistic, p_value, bins = hosmer_lemeshow(y, 1.0 / (1.0 + np.exp(-margin)))
    figure, ax = plt.subplots(figsize=(4, 4))
    ax.plot([b[0] for b in bins], [b[1] for b in bins], marker="o")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate",
           title=f"calibration: HL {statistic:.1f}, p = {p_value:.3g}")
    return figure, statistic, p_value, len(bins)


def _roc_and_calibration(y: np.ndarray, margin: np.ndarray) -> list[str]:
    calibration, statistic, p_value, deciles = calibration_figure(y, margin)
    text = (f"<p>Hosmer-Lemeshow statistic {statistic:.2f} over {deciles} deciles of predicted probability "
            f"(chi-square, {deciles - 2} degrees of freedom): p = {p_value:.3g}</p>")
    return [png_tag(roc_figure(y, margin)), png_tag(calibration), text]


def _coefficients(model: ModelSummary) -> str:
    """Each GLM coordinate's histogram of estimates, as the summary counted them (reading a million
    entities' coefficients again would double the report's time)."""
    coordinates: list[FixedEffectSummary | RandomEffectSummary] = [*model.fixed_effects, *model.random_effects]
    if not coordinates:
        return "<p>No GLM coordinates.</p>"
    figure, axes = plt.subplots(1, len(coordinates), figsize=(4 * len(coordinates), 3), squeeze=False)
    for ax, coordinate in zip(axes[0], coordinates, strict=True):
        kind = "fixed" if isinstance(coordinate, FixedEffectSummary) else "random"
        ax.stairs(coordinate.histogram.counts, coordinate.histogram.edges, fill=True)
        ax.set_title(f"{coordinate.name} ({kind}): {sum(coordinate.histogram.counts)} coefficients", fontsize=9)
        ax.set_yscale("log")
    return png_tag(figure)


def _entity_sizes(plan: GamePlan, best_run: int) -> str:
    partitioned = [(s, s.partitions) for s in plan.runs()[best_run] if s.partitions and s.pass_index == 0]
    if not partitioned:
        return "<p>No random-effect coordinates.</p>"
    figure, axes = plt.subplots(1, len(partitioned), figsize=(4 * len(partitioned), 3), squeeze=False)
    for ax, (step, partitions) in zip(axes[0], partitioned, strict=True):
        sizes = read_parquet(join(partitions, "active"), ["n_rows"]).column("n_rows").to_numpy()
        report = json.loads(storage_for(partitions).read_bytes(join(partitions, "_report.json")))
        ax.hist(sizes, bins=40)
        ax.set_title(f"{step.coordinate}: rows per entity\n{len(sizes)} active, "
                     f"{report['entities_passive']} passive", fontsize=9)
        ax.set_yscale("log")
    return png_tag(figure)


def write_report(config: GameConfig) -> str:
    plan = GamePlan(config)
    summary = json.loads(storage_for(plan.summary).read_bytes(plan.summary))
    best = plan.steps()[summary["best"]]
    sections = [f"<h1>{html.escape(config.name)}</h1>",
                f"<p>task {config.task}; best model: run {best.run}, pass {best.pass_index}, after "
                f"{html.escape(best.coordinate)} on {html.escape(summary['primary_metric'])}; "
                f"published at <code>{html.escape(plan.best)}</code></p>",
                "<h2>Validation metrics per coordinate update</h2>", _metric_table(summary), _metric_plot(summary)]
    if config.task == "logistic":
        y, margin = labels_and_scores(join(best.scores, "validation"))
        sections += ["<h2>Best model on the validation data</h2>", *_roc_and_calibration(y, margin)]
    model = model_summary(plan.best)
    sections += ["<h2>Model summary</h2>", model.to_html(), "<h2>Coefficients</h2>", _coefficients(model),
                 "<h2>Training rows per entity</h2>", _entity_sizes(plan, best.run)]
    style = ("body{font-family:sans-serif;margin:2em} table{border-collapse:collapse} "
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right} tr.best{background:#dfd}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(config.name)}</title>" \
           f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
    target = join(plan.report, "index.html")
    storage_for(target).makedirs(plan.report)
    write_file_atomically(join(plan.report, SUMMARY_FILE), model.to_json().encode())
    write_file_atomically(target, page.encode())
    return target


def main(argv: list[str] | None = None, out: TextIO | None = None, cwd: Path | None = None) -> int:
    return config_command("glmix.game.report", argv, lambda config: f"report: {write_report(config)}", out, cwd)


if __name__ == "__main__":
    sys.exit(main())
