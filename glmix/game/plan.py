"""The unrolled coordinate-descent schedule of a GAME config, with every stage's storage path.

One place decides where each output lives, so the flow builder (which writes the commands), the
best-model selection and the report (which read the outputs) always agree::

    OUTPUT/
      index/<shard>/                          feature index of each shard (training data)
      prepared/<fixed>/{train,validation}/    the fixed effect's indexed rows
      partitions/<coordinate>/                a random effect's per-entity training data (made once)
      <run>/pass-<p>/<coordinate>/            a coordinate's trainer output (model/, scores/train/ -- the
                                              next coordinates' offsets --, _shard.json, _report.json)
      <run>/pass-<p>/<coordinate>.scores/     ScoringResult of validation/ after that update
      <run>/pass-<p>/<coordinate>.metrics/    validation metrics after that update
      best/                                   the best GAME model (see glmix.model.game_model)
      summary.json                            every step's metrics and the choice of best
      report/index.html                       the model report

``<run>`` is ``run-<k>`` for the k-th regularization combination (``run-0`` without a grid).
"""

from __future__ import annotations

from dataclasses import dataclass

from glmix.game.config import GameConfig, L2Weight
from glmix.io.storage import join
from glmix.model.game_model import CoordinateModel


@dataclass(frozen=True)
class Step:
    """One coordinate update: train it against the others' training scores, then score and evaluate
    the GAME model on the validation data."""

    run: int
    pass_index: int
    coordinate: str
    l2: L2Weight
    l1: float
    output: str                         # trainer output
    partitions: str | None              # random effects: partitioned data (one per coordinate)
    scores: str
    metrics: str
    offsets: tuple[str, ...]            # the other coordinates' newest training scores (summed by the trainer)
    warm_start: str | None              # this coordinate's model from the previous pass
    models: tuple[CoordinateModel, ...]  # the GAME model right after this step

    @property
    def label(self) -> str:
        return f"pass-{self.pass_index}/{self.coordinate}"


class GamePlan:
    def __init__(self, config: GameConfig) -> None:
        self.config = config
        self.root = config.output

    @property
    def index_root(self) -> str:
        return join(self.root, "index")

    def index(self, shard: str) -> str:
        return join(self.index_root, shard)

    def prepared(self, split: str) -> str:
        return join(self.root, "prepared", self.config.fixed_effect or "fixed", split)

    def partitions(self, coordinate: str) -> str:
        return join(self.root, "partitions", coordinate)

    @property
    def best(self) -> str:
        return join(self.root, "best")

    @property
    def summary(self) -> str:
        return join(self.root, "summary.json")

    @property
    def report(self) -> str:
        return join(self.root, "report")

    @property
    def production_pointer(self) -> str:
        """The registry's production version when the run checked: ``{"version", "model"}``."""
        return join(self.root, "production.json")

    @property
    def production_scores(self) -> str:
        return join(self.root, "production.scores")

    @property
    def production_metrics(self) -> str:
        return join(self.root, "production.metrics")

    @property
    def data_gate(self) -> str:
        """The data gate's statistics of the training window, decision and report (jobs/data_gate)."""
        return join(self.root, "data-gate")

    @property
    def tracking(self) -> str:
        """The run's record as the registry (and MLflow) got it (glmix.registry.tracking)."""
        return join(self.root, "tracking.json")

    @property
    def gate(self) -> str:
        """The model gate's decision and report (gate.json, index.html)."""
        return join(self.root, "gate")

    @property
    def run_state(self) -> str:
        """Where flow runs keep their nodes' records and their lease (glmix.flow.run_state, .lease)."""
        return join(self.root, "_flow")

    def runs(self) -> list[list[Step]]:
        """Every regularization run's steps, in execution order."""
        return [self._steps(k, weights) for k, weights in enumerate(self.config.grid())]

    def _steps(self, run: int, weights: dict[str, tuple[L2Weight, float]]) -> list[Step]:
        c = self.config
        base = join(self.root, f"run-{run}")
        latest: dict[str, CoordinateModel] = {}
        steps: list[Step] = []
        for p in range(c.passes):
            for name in c.update_sequence:
                coordinate = c.coordinates[name]
                where = join(base, f"pass-{p}")
                output = join(where, name)
                previous = latest.get(name)
                offsets = tuple(latest[n].scores("train") for n in c.update_sequence if n in latest and n != name)
                kind = coordinate.kind
                latest[name] = CoordinateModel(name, kind, output, getattr(coordinate, "entity_field", None))
                l2, l1 = weights[name]
                steps.append(Step(
                    run=run, pass_index=p, coordinate=name, l2=l2, l1=l1, output=output,
                    partitions=self.partitions(name) if coordinate.type == "random" else None,
                    scores=join(where, f"{name}.scores"), metrics=join(where, f"{name}.metrics"),
                    offsets=offsets, warm_start=previous.directory if previous and kind != "scores" else None,
                    models=tuple(latest[n] for n in c.update_sequence if n in latest)))
        return steps

    def steps(self) -> list[Step]:
        return [step for run in self.runs() for step in run]
