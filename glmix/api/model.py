"""A GAME model as a notebook inspects it: its summary, coefficients as pandas, scores and metrics on
a dataset, and plots — each through the code the flow's stages run (the model summary, the
scoring job's Spark work, the evaluators, the report's figures)."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from glmix.api.dataset import Dataset
from glmix.api.plots import Plot, caterpillar, figure_plot
from glmix.errors import ConfigError
from glmix.game.report import calibration_figure, roc_figure
from glmix.glm.metrics import Evaluator, evaluate_all
from glmix.io.storage import qualified
from glmix.model.game_model import CoordinateModel, read_game_model
from glmix.model.linear_model import read_models
from glmix.model.summary import Z_95, ModelSummary, model_summary
from glmix.registry.store import ModelRegistry
from glmix.spark.scoring import score_frame


class GameModel:
    """A published GAME model (``OUTPUT/best``, a registry version), or the model after a step of a
    ``GameEstimator`` (``directory`` is then None: it has not been published)."""

    def __init__(self, models: list[CoordinateModel], metadata: dict[str, Any], directory: str | None = None) -> None:
        self.models, self.metadata, self.directory = models, metadata, directory

    @classmethod
    def load(cls, path: str | None = None, registry: str | None = None, name: str | None = None,
             version: int | None = None) -> GameModel:
        """``path`` to a published model, or ``registry`` + ``name`` [+ ``version``, default production]."""
        if (path is None) == (registry is None):
            raise ConfigError("GameModel.load: give either a path or a registry (with name)")
        if registry is not None:
            if not name:
                raise ConfigError("GameModel.load: a registry needs the model's name")
            path = ModelRegistry(registry).version(name, version).model_uri
        assert path is not None
        models, metadata = read_game_model(path)
        return cls(models, metadata, path)

    @property
    def coordinates(self) -> list[str]:
        return [m.name for m in self.models]

    def _coordinate(self, name: str) -> CoordinateModel:
        found = next((m for m in self.models if m.name == name), None)
        if found is None:
            raise ConfigError(f"no coordinate {name!r}; this model's: {', '.join(self.coordinates)}")
        return found

    def summary(self) -> ModelSummary:
        if self.directory is None:
            raise ConfigError("the summary reads a published model: GameModel.load(...) or GameEstimator.fit()")
        return model_summary(self.directory)

    def coefficients(self, coordinate: str, entity: str | None = None) -> pd.DataFrame:
        """One row per coefficient: entity (random effects), name, term, value, variance (None
        without variances), std_error, low and high (the 95% interval)."""
        model = self._coordinate(coordinate)
        if model.type == "scores":
            raise ConfigError(f"coordinate {coordinate} is given by its scores (Keras or external): no coefficients")
        rows = []
        for glm in read_models(model.coefficients):
            if entity is not None and glm.model_id != str(entity):
                continue
            for (name, term), value in glm.means.items():
                variance = glm.variances.get((name, term)) if glm.variances else None
                se = math.sqrt(variance) if variance is not None else None
                rows.append({"entity": glm.model_id if model.type == "random" else None, "name": name, "term": term,
                             "value": value, "variance": variance, "std_error": se,
                             "low": None if se is None else value - Z_95 * se,
                             "high": None if se is None else value + Z_95 * se})
        if entity is not None and not rows:
            raise ConfigError(f"coordinate {coordinate} has no model for entity {entity!r}")
        return pd.DataFrame(rows, columns=["entity", "name", "term", "value", "variance", "std_error", "low", "high"])

    def score(self, dataset: Dataset) -> pd.DataFrame:
        """uid, label, weight, score (the scoring job's predictionScore) and each coordinate's score."""
        scored, _, names = score_frame(dataset.spark, "notebook", qualified(dataset.path), self.models, "notebook",
                                       dataset.columns, "fail")
        return pd.DataFrame(scored.select("uid", "label", "weight", F.col("predictionScore").alias("score"),
                                          *[F.col("coordinateScores")[n].alias(n) for n in names]).toPandas())

    def evaluate(self, dataset: Dataset, evaluators: tuple[str, ...] = ("AUC",)) -> dict[str, float]:
        """Metrics of the scores, by the evaluators the flow's evaluation uses (grouped ones need
        their id among the dataset's entity fields)."""
        parsed = [Evaluator.parse(e) for e in evaluators]
        scored, _, _ = score_frame(dataset.spark, "notebook", qualified(dataset.path), self.models, "notebook",
                                   dataset.columns, "fail", tuple(e.group for e in parsed if e.group))
        table = pd.DataFrame(scored.select("label", "predictionScore", "weight", "metadataMap").toPandas())
        y, margin, weight = (table[c].to_numpy(dtype=float) for c in ("label", "predictionScore", "weight"))
        return evaluate_all(parsed, y, margin, weight,
                            lambda evaluator: np.asarray([m[evaluator.group] for m in table["metadataMap"]]))[0]

    def plot_roc(self, dataset: Dataset) -> Plot:
        scored = self.score(dataset)
        return figure_plot(roc_figure(scored["label"].to_numpy(), scored["score"].to_numpy(), "ROC"))

    def plot_calibration(self, dataset: Dataset) -> Plot:
        scored = self.score(dataset)
        return figure_plot(calibration_figure(scored["label"].to_numpy(), scored["score"].to_numpy())[0])

    def plot_caterpillar(self, coordinate: str, feature: tuple[str, str] = ("(INTERCEPT)", ""),
                         entities: int = 40) -> Plot:
        """One feature's coefficient (the intercept by default) across the random effect's entities
        with the most extreme estimates, each with its 95% interval when the model has variances."""
        table = self.coefficients(coordinate)
        chosen = table[(table["name"] == feature[0]) & (table["term"] == feature[1])]
        if chosen.empty:
            raise ConfigError(f"coordinate {coordinate} has no coefficient for {feature}")
        chosen = chosen.reindex(chosen["value"].abs().sort_values(ascending=False).index).head(entities)
        has_se = bool(chosen["std_error"].notna().all())
        label = feature[0] + (f" {feature[1]}" if feature[1] else "")
        return caterpillar([str(e) for e in chosen["entity"]], chosen["value"].to_numpy(dtype=float),
                           chosen["low"].to_numpy(dtype=float) if has_se else None,
                           chosen["high"].to_numpy(dtype=float) if has_se else None,
                           f"{coordinate}: {label}, the {len(chosen)} largest of {len(table[table['name'] == feature[0]])}")

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(m.name)}</td><td>{m.type}</td><td>{html.escape(m.entity_field or '')}"
                       f"</td></tr>" for m in self.models)
        where = html.escape(self.directory or "not published (a step of a GameEstimator)")
        return (f"<p>GAME model {where}</p><table><tr><th>coordinate</th><th>type</th><th>entity field</th></tr>"
                f"{rows}</table>")
