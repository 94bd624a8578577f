"""GAME config -> the flow of stages that trains it: one Azkaban command job per stage, passes unrolled.

    wait-input                       glmix.game.wait_input      (a scheduled flow: the run's input days complete)
    data-gate                        jobs/data_gate             (with data_gate: the training window against
                                                                the production version's; fails the flow)
    index                            jobs/index_features        (every shard in one pass, training data)
    prepare                          jobs/prepare_fixed_effect  (the fixed effect's shard, both splits)
    partition                        jobs/partition_random_effect   (every random effect, once)
    [r<k>-]p<p>-<coord>-train        launcher -> glmix.train.fixed_effect (a fixed effect), or
                                     glmix.train.external_scores (offsets: the other coordinates'
                                     newest training scores, which every trainer writes, so trains
                                     follow trains directly)
    [r<k>-]p<p>-<coord>              jobs/score: the GAME model after this update, on validation, and
                                     its metrics (--evaluators: scored and evaluated in one Spark
                                     application, as Photon ML's scoring driver evaluates); for a
                                     random effect, jobs/train_random_effect first, in the same node
    select-best                      glmix.game.select_best: best step on the first evaluator -> best/
    report                           glmix.game.report: report/index.html
    production                       with a registry, at the start: which version is production
                                     (glmix.registry.gate production); with retrain, the trainers start from it
    track                            with a registry: glmix.registry.tracking records the run (and logs
                                     it to MLflow with a tracking section)
    production-score, gate           with a registry: the production version scored and evaluated on
                                     this run's validation data; glmix.registry.gate registers best/,
                                     promotes it or rejects it (the model gate)

A node whose Spark stages belong together runs them in one Spark application (jobs/together:
``--and`` side by side, ``--then`` one after the other): on YARN each application pays ~30 s for
its containers before any work, more than these stages take at small sizes.

Commands use flow properties (``${spark.master}``, ``${glmix.python}``...) whose defaults are in
the flow's ``config``; Azkaban users override them per execution, the local runner sets them for
this machine. The same project runs under Azkaban and under ``glmix flow run``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from glmix.deploy import Shipment
from glmix.flow.azkaban import Flow, Node, write_project
from glmix.game.config import (
    ExternalCoordinate,
    FixedGlmCoordinate,
    FixedKerasCoordinate,
    GameConfig,
    RandomCoordinate,
)
from glmix.game.plan import GamePlan, Step
from glmix.io.storage import join
from glmix.settings import FeatureShard
from glmix.spark.job_args import (
    DataGateArgs,
    IndexArgs,
    PartitionArgs,
    PrepareArgs,
    ScoreArgs,
    SparkJobArgs,
    TogetherArgs,
    TrainRandomEffectArgs,
)
from glmix.stage_args import StageArgs
from glmix.train.external_scores import ExternalScoresArgs
from glmix.train.fixed_effect import FixedEffectArgs
from glmix.train.keras_fixed_effect import KerasArgs

CONFIG_FILE = "config.yaml"
DEFAULT_PROPERTIES = {
    "glmix.home": "/opt/glmix",
    "glmix.python": "python3",
    "spark.submit": "spark-submit",
    "spark.avro.jar": "/opt/glmix/jars/spark-avro_2.13-4.1.1.jar",
    "spark.deploy.mode": "client",
    # how the driver and executors find Python and glmix: here, glmix installed on every node;
    # a shipped project (`glmix flow build --ship`) carries the packed environment and code instead
    "glmix.spark.options": "--conf spark.pyspark.python=${glmix.python}",
    "launcher.options": "",
}
# the day a dated input's last_days counts back from: the flow's start date, which Azkaban sets;
# a run for another day sets glmix.run.date (Azkaban's flow parameters, `glmix flow run --set`)
RUN_DATE = {"glmix.run.date": "${azkaban.flow.start.year}-${azkaban.flow.start.month}-${azkaban.flow.start.day}"}


class FlowBuilder:
    def __init__(self, config: GameConfig, shipment: Shipment | None = None) -> None:
        """``shipment``: glmix's environment and code on HDFS (glmix.deploy), which the flow's Spark
        stages (then in YARN's cluster deploy mode) and launcher jobs use instead of an installed glmix."""
        self.config = config
        self.shipment = shipment
        self.plan = GamePlan(config)
        self.specs: dict[str, str] = {}

    def spark(self, script: str, args: StageArgs) -> str:
        s = self.config.resources.spark
        return (f"${{spark.submit}} --master ${{spark.master}} --deploy-mode ${{spark.deploy.mode}} "
                f"--driver-memory {s.driver_memory} --num-executors {s.executors} --executor-memory {s.executor_memory} "
                f"--jars ${{spark.avro.jar}} "
                f"${{glmix.spark.options}} ${{glmix.home}}/jobs/{script}.py {shlex.join(args.to_argv())}")

    def spark_jobs(self, *groups: list[SparkJobArgs]) -> str:
        """One Spark application for the jobs: groups one after the other, a group's jobs side by side."""
        if len(groups) == 1 and len(groups[0]) == 1:
            return self.spark(groups[0][0].PROG, groups[0][0])
        return self.spark("together", TogetherArgs(groups=list(groups)))

    def _dated(self, split: str) -> dict[str, Any]:
        """A dated split's days, counted from the run's date (a flow property)."""
        dates = getattr(self.config.input, f"{split}_dates")
        return {"dates": dates, "run_date": "${glmix.run.date}"} if dates else {}

    def python(self, module: str, arguments: list[str]) -> str:
        return f"${{glmix.python}} -m {module} {shlex.join(arguments)}"

    def build(self) -> Flow:
        c, plan = self.config, self.plan
        reading = {"columns": c.columns, "bad_records": c.bad_records}
        train = {**reading, **self._dated("train")}
        used = [s for s in c.feature_shards if s.name in {getattr(k, "shard", None) for k in c.coordinates.values()}]
        # a scheduled run first waits for its input days to be complete
        start = [Node("wait-input", self.python("glmix.game.wait_input", [CONFIG_FILE, "${glmix.run.date}"]))] \
            if c.schedule else []
        if c.data_gate:
            start.append(self._data_gate([n.name for n in start], used))
        after_start = [start[-1].name] if start else []
        if c.registry:   # which version is production as the run starts: the retrainers' start, the gate's rival
            start.append(Node("production", self.python("glmix.registry.gate", ["production", CONFIG_FILE]),
                              after_start, _declared([plan.production_pointer],
                                                     [CONFIG_FILE, join(c.registry.root, c.registry.model or c.name)])))
        nodes = start + ([Node("index", self.spark("index_features", IndexArgs(
            input=c.input.train, output=plan.index_root, shards=used, **train)), after_start,
            _declared([plan.index(s.name) for s in used], [c.input.train]))] if used else [])
        if c.fixed_effect:
            shard, splits = self._fixed_shard(), ("train", "validation")
            nodes.append(Node("prepare", self.spark_jobs([PrepareArgs(
                input=getattr(c.input, split), index=plan.index(shard), output=plan.prepared(split),
                files=c.resources.spark.partitions, task=c.task, **reading, **self._dated(split)) for split in splits]),
                ["index"], _declared([plan.prepared(s) for s in splits], [getattr(c.input, s) for s in splits])))
        if c.random_effects():
            nodes.append(Node("partition", self.spark_jobs([PartitionArgs(
                input=c.input.train, entity_field=coordinate.entity_field, index=plan.index(coordinate.shard),
                output=plan.partitions(name), lower_bound=coordinate.lower_bound,
                upper_bound=coordinate.upper_bound, partitions=c.resources.spark.partitions, task=c.task,
                **train) for name, coordinate in c.random_effects().items()]), ["index"],
                _declared([plan.partitions(name) for name in c.random_effects()], [c.input.train])))
        runs, steps = plan.runs(), []
        for run in runs:
            previous: str | None = None
            for step in run:
                steps.append(name := step_node_name(step, len(runs)))
                step_nodes = self._step(step, name, previous)
                nodes += step_nodes
                previous = step_nodes[0].name   # the node that publishes the step's model
        nodes.append(Node("select-best", self.python("glmix.game.select_best", [CONFIG_FILE]), steps,
                          _declared([plan.best, plan.summary], [CONFIG_FILE])))
        nodes.append(Node("report", self.python("glmix.game.report", [CONFIG_FILE]), ["select-best"],
                          _declared([join(plan.report, "index.html")], [CONFIG_FILE])))
        if c.registry:
            nodes += self._gate()
        retry = {"retries": str(c.flow.retries), "retry.backoff": str(c.flow.retry_backoff_ms)}
        for node in nodes:
            node.config.update(retry)
        properties = {**DEFAULT_PROPERTIES, "glmix.state": plan.run_state, "spark.master": c.resources.spark.master,
                      "launcher.backend": c.resources.launcher.backend,
                      **(RUN_DATE if c.input.train_dates or c.input.validation_dates else {}),
                      **(self._shipped() if self.shipment else {})}
        trigger = {"schedule": {"type": "cron", "value": c.schedule.cron}} if c.schedule else None
        return Flow(c.name, nodes, properties, trigger)

    def _shipped(self) -> dict[str, str]:
        assert self.shipment is not None
        return {"spark.deploy.mode": "cluster", "glmix.spark.options": self.shipment.spark_options(),
                "launcher.options": self.shipment.launcher_options()}

    def _data_gate(self, after: list[str], shards: list[FeatureShard]) -> Node:
        """The new training window against the production version's, before anything trains."""
        c = self.config
        assert c.registry is not None and c.data_gate is not None
        bags = list(dict.fromkeys(b for s in shards for b in s.bags))
        return Node("data-gate", self.spark("data_gate", DataGateArgs(
            input=c.input.train, output=self.plan.data_gate, bags=bags,
            entity_fields=[r.entity_field for r in c.random_effects().values()], task=c.task,
            registry=c.registry.root, model=c.registry.model or c.name, gate=c.data_gate,
            columns=c.columns, **self._dated("train"))), after, _declared([self.plan.data_gate], [c.input.train]))

    def _gate(self) -> list[Node]:
        """Score the registry's production version on this run's validation data, then the gate."""
        c, plan = self.config, self.plan
        score = self.spark("score", ScoreArgs(
            data=[f"validation={c.input.validation}"], model_pointer=plan.production_pointer,
            output=plan.production_scores, model_id=c.name, id_fields=c.id_fields, bad_records=c.bad_records,
            columns=c.columns, metrics=plan.production_metrics, evaluators=c.evaluators, **self._dated("validation")))
        run_date = ["${glmix.run.date}"] if c.input.train_dates or c.input.validation_dates else []
        return [Node("track", self.python("glmix.registry.tracking", [CONFIG_FILE, *run_date]), ["select-best"],
                     _declared([plan.tracking], [CONFIG_FILE])),
                Node("production-score", score, ["production", "select-best"],
                     _declared([plan.production_scores, plan.production_metrics], [c.input.validation])),
                Node("gate", self.python("glmix.registry.gate", ["decide", CONFIG_FILE, *run_date]),
                     ["production-score", "report"], _declared([plan.gate], [CONFIG_FILE]))]

    def _retrain(self) -> dict[str, Any]:
        """A GLM trainer's settings for starting from the production version (none without retrain)."""
        r = self.config.retrain
        return {} if r is None else {"production": self.plan.production_pointer, "production_warm_start": r.warm_start,
                                     "production_prior": r.prior, "incremental_weight": r.prior_weight}

    def _fixed_shard(self) -> str:
        coordinate = self.config.coordinates[self.config.fixed_effect or ""]
        assert isinstance(coordinate, FixedGlmCoordinate | FixedKerasCoordinate)
        return coordinate.shard

    def _step(self, step: Step, name: str, previous: str | None) -> list[Node]:
        """The step's nodes, the one that publishes its model first; the last, named as the step,
        publishes the GAME model's validation scores and metrics after it."""
        c, plan = self.config, self.plan
        coordinate = c.coordinates[step.coordinate]
        after = ([previous] if previous else []) + (["production"] if c.retrain else [])
        # a fixed effect's validation scores are its trainer's own (looked up by uid, not recomputed)
        score = ScoreArgs(
            data=[f"validation={c.input.validation}"],
            random_effect=[m.flag_value() for m in step.models if m.type == "random"],
            scores=[m.flag_value() for m in step.models if m.type != "random"],
            output=step.scores, model_id=c.name, id_fields=c.id_fields, bad_records=c.bad_records,
            columns=c.columns, metrics=step.metrics, evaluators=c.evaluators, coordinate=step.coordinate,
            pass_index=step.pass_index, **self._dated("validation"))
        if isinstance(coordinate, RandomCoordinate):   # trains, then scores, in one Spark application
            train = TrainRandomEffectArgs(
                data=step.partitions, index=plan.index(coordinate.shard), output=step.output,
                model_id=step.coordinate, task=c.task, l2=step.l2, intercept_l2=coordinate.intercept_l2, l1=step.l1,
                variance=coordinate.variance, warm_start=step.warm_start, offsets=list(step.offsets) or None,
                **self._retrain(), **_given(max_iterations=coordinate.max_iterations))
            return [Node(name, self.spark_jobs([train], [score]), ["partition", *after],
                         _declared([step.output, step.scores, step.metrics], [c.input.validation]))]
        if isinstance(coordinate, ExternalCoordinate):
            trainer = Node(f"{name}-train", self.python("glmix.train.external_scores", ExternalScoresArgs(
                train=coordinate.scores.train, validation=coordinate.scores.validation,
                output=step.output).to_argv()), after)
        else:
            spec = f"specs/{name}.yaml"
            self.specs[spec] = self._fixed_effect_spec(step, name, coordinate)
            trainer = Node(f"{name}-train", f"${{glmix.python}} -m launcher submit {spec} --backend "
                           "${launcher.backend} ${launcher.options}", ["prepare", *after])
        trainer.config.update(_declared([step.output]))
        return [trainer, Node(name, self.spark_jobs([score]), [trainer.name],
                              _declared([step.scores, step.metrics], [c.input.validation]))]

    def _fixed_effect_spec(self, step: Step, name: str, coordinate: FixedGlmCoordinate | FixedKerasCoordinate) -> str:
        c, plan, launcher = self.config, self.plan, self.config.resources.launcher
        data = {"index": plan.index(coordinate.shard), "train": plan.prepared("train"),
                "validation": plan.prepared("validation"), "output": step.output, "task": c.task,
                "model_id": step.coordinate, "offsets": list(step.offsets) or None}
        if isinstance(coordinate, FixedKerasCoordinate):
            k = coordinate.keras
            args: StageArgs = KerasArgs(**data, model=k.model, model_args=k.model_args, optimizer=k.optimizer,
                                        learning_rate=k.learning_rate, epochs=k.epochs,
                                        steps_per_epoch=k.steps_per_epoch, batch_size=k.batch_size)
            module = "glmix.train.keras_fixed_effect"
        else:
            args = FixedEffectArgs(**data, l2=step.l2, l1=step.l1, variance=coordinate.variance,
                                   warm_start=step.warm_start and f"{step.warm_start}/model", **self._retrain(),
                                   **_given(max_iterations=coordinate.max_iterations, compute=coordinate.compute,
                                            solver=coordinate.solver))
            module = "glmix.train.fixed_effect"
        command = f"python -m {module} {shlex.join(args.to_argv())}"
        spec = {"name": f"{c.name}-{name}"[:63], "max_attempts": launcher.max_attempts,
                "tasks": {"worker": {"instances": launcher.workers, "memory": launcher.memory, "command": command}}}
        return "# generated by `glmix flow build`: the fixed-effect training of one coordinate-descent step\n" + \
            yaml.safe_dump(spec, sort_keys=False, width=1000)


def _declared(outputs: list[str], inputs: list[str] | None = None) -> dict[str, str]:
    """A node's published outputs and the data it reads, for the runner to know when its run still
    stands (glmix.flow.run_state); Azkaban ignores properties its job types do not use."""
    return {"glmix.outputs": shlex.join(outputs), **({"glmix.inputs": shlex.join(inputs)} if inputs else {})}


def _given(**values: object) -> dict[str, object]:
    """The settings a config gives (not None), so the stage's own defaults apply to the others."""
    return {key: value for key, value in values.items() if value is not None}


def step_node_name(step: Step, runs: int) -> str:
    """``p0-global``, or ``r2-p0-global`` when a regularization grid has several runs."""
    return f"{'r' + str(step.run) + '-' if runs > 1 else ''}p{step.pass_index}-{step.coordinate}"


def build_project(config: GameConfig, directory: Path, shipment: Shipment | None = None) -> Path:
    """Write the Azkaban project of ``config`` into ``directory`` (the flow, launcher specs, the config)."""
    builder = FlowBuilder(config, shipment)
    flow = builder.build()
    files = {CONFIG_FILE: yaml.safe_dump(config.to_dict(), sort_keys=False), **builder.specs}
    return write_project(directory, config.name, flow, files)
