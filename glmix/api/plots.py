"""Plots a notebook displays inline: a matplotlib figure wrapped so that Jupyter shows it as a PNG
whatever matplotlib backend is active (the report's module selects Agg)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


@dataclass
class Plot:
    figure: Figure

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        return buffer.getvalue()

    def save(self, path: str) -> None:
        self.figure.savefig(path, dpi=90, bbox_inches="tight")


def figure_plot(figure: Figure) -> Plot:
    plt.close(figure)    # kept by the Plot, not by pyplot (no second display, no leak)
    return Plot(figure)


def histogram(values: np.ndarray, title: str, xlabel: str, log_y: bool = False) -> Plot:
    figure, ax = plt.subplots(figsize=(5, 3))
    ax.hist(values, bins=40)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    if log_y:
        ax.set_yscale("log")
    return figure_plot(figure)


def caterpillar(labels: list[str], estimates: np.ndarray, low: np.ndarray | None, high: np.ndarray | None,
                title: str) -> Plot:
    """Estimates sorted, each with its 95% interval when the model has variances."""
    order = np.argsort(estimates)
    figure, ax = plt.subplots(figsize=(6, max(2.5, 0.12 * len(labels))))
    positions = np.arange(len(order))
    if low is not None and high is not None:
        ax.hlines(positions, low[order], high[order], color="0.6", linewidth=1)
    ax.plot(estimates[order], positions, "o", markersize=3)
    ax.axvline(0, color="k", linewidth=0.6, linestyle=":")
    ax.set_yticks(positions, [labels[k] for k in order], fontsize=6)
    ax.set(title=title, xlabel="coefficient (95% interval)" if low is not None else "coefficient")
    return figure_plot(figure)
