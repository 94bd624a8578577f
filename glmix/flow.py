"""GAME config -> the flow of stages that trains it: one Azkaban command job per stage, passes unrolled.

    index                            jobs/index_features        (every shard in one pass, training data)
    prepare-train, prepare-validation jobs/prepare_fixed_effect (the fixed effect's shard)
    partition-<coord>                jobs/partition_random_effect   (each random effect, once)
    [r<k>-]p<p>-<coord>-train        launcher -> glmix.fixed_effect, or jobs/train_random_effect
                                     (offsets: the other coordinates' newest training scores, which
                                     every trainer writes, so trains follow trains directly)
    [r<k>-]p<p>-<coord>-score        jobs/score: the GAME model after this update, on validation
    [r<k>-]p<p>-<coord>-evaluate     jobs/evaluate on the validation scores
    select-best                      glmix.select_best: best step on the first evaluator -> best/
    report                           glmix.report: report/index.html

Commands use flow properties (``${spark.master}``, ``${glmix.python}``...) whose defaults are in
the flow's ``config``; Azkaban users override them per execution, the local runner sets them for
this machine. The same project runs under Azkaban and under ``glmix flow run``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml

from glmix.azkaban import Flow, Node, write_project
from glmix.game_config import GameConfig, KerasSettings
from glmix.game_model import FLAG
from glmix.game_plan import GamePlan, Step

CONFIG_FILE = "config.yaml"
DEFAULT_PROPERTIES = {
    "glmix.home": "/opt/glmix",
    "glmix.python": "python3",
    "spark.submit": "spark-submit",
    "spark.avro.jar": "/opt/glmix/jars/spark-avro_2.13-4.1.1.jar",
}


def _args(*pairs: tuple[str, object]) -> str:
    """``--flag value`` pairs quoted for the shell: a list gives several values, True a bare flag,
    None or False nothing."""
    words = []
    for flag, value in pairs:
        if value is None or value is False:
            continue
        words.append(flag)
        if isinstance(value, list | tuple):
            words += [shlex.quote(str(v)) for v in value]
        elif value is not True:
            words.append(shlex.quote(str(value)))
    return " ".join(words)


class FlowBuilder:
    def __init__(self, config: GameConfig) -> None:
        self.config = config
        self.plan = GamePlan(config)
        self.specs: dict[str, str] = {}

    def spark(self, script: str, *pairs: tuple[str, object]) -> str:
        s = self.config.resources.spark
        return (f"${{spark.submit}} --master ${{spark.master}} --deploy-mode client --num-executors {s.executors} "
                f"--executor-memory {s.executor_memory} --jars ${{spark.avro.jar}} "
                f"--conf spark.pyspark.python=${{glmix.python}} ${{glmix.home}}/jobs/{script}.py {_args(*pairs)}")

    def python(self, module: str, *arguments: str) -> str:
        return f"${{glmix.python}} -m {module} {' '.join(shlex.quote(a) for a in arguments)}"

    def build(self) -> Flow:
        c, plan = self.config, self.plan
        reading = (("--bad-records", c.bad_records), ("--response", c.columns.response))
        used = [s for s in c.feature_shards if s.name in {coordinate.shard for coordinate in c.coordinates.values()}]
        shards = json.dumps([s.model_dump(exclude_defaults=True) for s in used], separators=(",", ":"))
        nodes = [Node("index", self.spark("index_features", ("--input", c.input.train),
                                          ("--output", plan.index_root), ("--shards", shards), *reading))
                 ] if used else []
        if c.fixed_effect:
            shard = c.coordinates[c.fixed_effect].shard
            for split in ("train", "validation"):
                nodes.append(Node(f"prepare-{split}", self.spark(
                    "prepare_fixed_effect", ("--input", getattr(c.input, split)), ("--index", plan.index(shard)),
                    ("--output", plan.prepared(split)), ("--files", c.resources.spark.partitions), ("--task", c.task),
                    *reading),
                    ["index"]))
        for name, coordinate in c.coordinates.items():
            if coordinate.type == "random":
                nodes.append(Node(f"partition-{name}", self.spark(
                    "partition_random_effect", ("--input", c.input.train), ("--entity-field", coordinate.entity_field),
                    ("--index", plan.index(coordinate.shard)), ("--output", plan.partitions(name)),
                    ("--lower-bound", coordinate.lower_bound), ("--upper-bound", coordinate.upper_bound),
                    ("--partitions", c.resources.spark.partitions), ("--task", c.task), *reading),
                    ["index"]))
        runs = plan.runs()
        for run in runs:
            previous: str | None = None
            for step in run:
                name = step_node_name(step, len(runs))
                nodes += self._step(step, name, previous)
                previous = f"{name}-train"
        evaluations = [n.name for n in nodes if n.name.endswith("-evaluate")]
        nodes.append(Node("select-best", self.python("glmix.select_best", CONFIG_FILE), evaluations))
        nodes.append(Node("report", self.python("glmix.report", CONFIG_FILE), ["select-best"]))
        retry = {"retries": str(c.flow.retries), "retry.backoff": str(c.flow.retry_backoff_ms)}
        for node in nodes:
            node.config.update(retry)
        properties = {**DEFAULT_PROPERTIES, "spark.master": c.resources.spark.master,
                      "launcher.backend": c.resources.launcher.backend}
        return Flow(c.name, nodes, properties)

    def _step(self, step: Step, name: str, previous: str | None) -> list[Node]:
        c, plan = self.config, self.plan
        coordinate = c.coordinates[step.coordinate]
        after = [previous] if previous else []
        nodes = []
        if coordinate.type == "external":
            train = Node(f"{name}-train", self.python(
                "glmix.external_scores", "--train", coordinate.scores.train, "--validation",
                coordinate.scores.validation, "--output", step.output), after)
        elif coordinate.type == "fixed":
            spec = f"specs/{name}.yaml"
            self.specs[spec] = self._fixed_effect_spec(step, name)
            train = Node(f"{name}-train", f"${{glmix.python}} -m launcher submit {spec} --backend ${{launcher.backend}}",
                         ["prepare-train", "prepare-validation", *after])
        else:
            train = Node(f"{name}-train", self.spark(
                "train_random_effect", ("--data", step.partitions), ("--index", plan.index(coordinate.shard)),
                ("--output", step.output), ("--model-id", step.coordinate), ("--task", c.task), ("--l2", step.l2),
                ("--intercept-l2", coordinate.intercept_l2), ("--l1", step.l1), ("--max-iterations", coordinate.max_iterations),
                ("--variance", coordinate.variance), ("--warm-start", step.warm_start),
                ("--offsets", list(step.offsets) or None)),
                [f"partition-{step.coordinate}", *after])
        nodes.append(train)
        # a fixed effect's validation scores are its trainer's own (looked up by uid, not recomputed)
        models = [(f"--{FLAG['scores' if m.type == 'fixed' else m.type]}",
                   f"{m.name}={m.entity_field + '=' if m.entity_field else ''}{m.directory}") for m in step.models]
        nodes.append(Node(f"{name}-score", self.spark(
            "score", ("--data", f"validation={c.input.validation}"), *models, ("--output", step.scores), ("--model-id", c.name),
            ("--id-fields", ",".join(c.id_fields)), ("--bad-records", c.bad_records),
            ("--response", c.columns.response)), [train.name]))
        nodes.append(Node(f"{name}-evaluate", self.spark(
            "evaluate", ("--scores", f"{step.scores}/validation"), ("--output", step.metrics),
            ("--evaluators", ",".join(c.evaluators)), ("--coordinate", step.coordinate),
            ("--pass", step.pass_index)), [f"{name}-score"]))
        return nodes

    def _fixed_effect_spec(self, step: Step, name: str) -> str:
        c, plan = self.config, self.plan
        coordinate, launcher = c.coordinates[step.coordinate], c.resources.launcher
        data = (("--index", plan.index(coordinate.shard)), ("--train", plan.prepared("train")),
                ("--validation", plan.prepared("validation")), ("--output", step.output), ("--task", c.task),
                ("--model-id", step.coordinate), ("--offsets", list(step.offsets) or None))
        if coordinate.model_type == "keras":
            k = coordinate.keras or KerasSettings()
            command = "python -m glmix.keras_fixed_effect " + _args(
                *data, ("--model", k.model), ("--model-args", json.dumps(k.model_args, sort_keys=True)),
                ("--optimizer", k.optimizer), ("--learning-rate", k.learning_rate), ("--epochs", k.epochs),
                ("--steps-per-epoch", k.steps_per_epoch), ("--batch-size", k.batch_size))
        else:
            command = "python -m glmix.fixed_effect " + _args(
                *data, ("--l2", step.l2), ("--l1", step.l1), ("--max-iterations", coordinate.max_iterations),
                ("--variance", coordinate.variance), ("--warm-start", step.warm_start and f"{step.warm_start}/model"),
                ("--compute", coordinate.compute))
        spec = {"name": f"{c.name}-{name}"[:63], "max_attempts": launcher.max_attempts,
                "tasks": {"worker": {"instances": launcher.workers, "memory": launcher.memory, "command": command}}}
        return "# generated by `glmix flow build`: the fixed-effect training of one coordinate-descent step\n" + \
            yaml.safe_dump(spec, sort_keys=False, width=1000)


def step_node_name(step: Step, runs: int) -> str:
    """``p0-global``, or ``r2-p0-global`` when a regularization grid has several runs."""
    return f"{'r' + str(step.run) + '-' if runs > 1 else ''}p{step.pass_index}-{step.coordinate}"


def build_project(config: GameConfig, directory: Path) -> Path:
    """Write the Azkaban project of ``config`` into ``directory`` (the flow, launcher specs, the config)."""
    builder = FlowBuilder(config)
    flow = builder.build()
    files = {CONFIG_FILE: yaml.safe_dump(config.to_dict(), sort_keys=False), **builder.specs}
    return write_project(directory, config.name, flow, files)
