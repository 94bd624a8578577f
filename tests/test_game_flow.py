"""GAME config validation, the generated Azkaban project and its loader rules (no Spark needed)."""

from __future__ import annotations

import filecmp
import shlex
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from glmix.errors import ConfigError
from glmix.flow.azkaban import read_project, validate_flow, zip_project
from glmix.flow.runner import LocalRunner, session_settings, submit_options
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.game.plan import GamePlan
from glmix.io.examples import ColumnNames
from glmix.spark.job_args import PrepareArgs, ScoreArgs, TogetherArgs, TrainRandomEffectArgs
from glmix.spark.session import spark_conf
from launcher.spec import JobSpec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "configs" / "movielens.yaml"


def example(**changes) -> dict:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    return data


def test_example_configs_load() -> None:
    config = GameConfig.from_yaml(EXAMPLE)
    assert config.fixed_effect == "global" and config.entity_fields == ["movieId", "userId"]
    assert config.primary_metric == "AUC" and config.higher_is_better()
    grid = GameConfig.from_yaml(REPO / "configs" / "movielens-grid.yaml")
    assert [run["per-user"] for run in grid.grid()] == [(0.3, 0.0), (3.0, 0.0), (30.0, 0.0)]


@pytest.mark.parametrize("changes, message", [
    ({"update_sequence": ["global", "per-nobody"]}, "update_sequence: no coordinate named 'per-nobody'"),
    ({"update_sequence": ["global", "global"]}, "appears twice"),
    ({"evaluators": ["AUC", "ACCURACY"]}, "unknown evaluator 'ACCURACY'"),
    ({"evaluators": ["PRECISION@5"]}, "needs a group"),
    ({"passes": 0}, "passes"),
    ({"unexpected": 1}, "unexpected"),
    ({"columns": {"label": "y"}}, "columns.label: Extra inputs are not permitted"),
])
def test_config_errors_name_the_key(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        GameConfig.from_dict(example(**changes))


def test_coordinate_errors_name_the_coordinate() -> None:
    data = example()
    data["coordinates"]["per-user"]["shard"] = "nope"
    with pytest.raises(ConfigError, match="coordinates.per-user.shard: no feature shard named 'nope'"):
        GameConfig.from_dict(data)
    data = example()
    del data["coordinates"]["per-user"]["entity_field"]
    with pytest.raises(ConfigError, match="coordinates.per-user.*entity_field"):
        GameConfig.from_dict(data)
    data = example()
    data["coordinates"]["per-user"]["compute"] = "scipy"
    with pytest.raises(ConfigError, match="coordinates.per-user.*compute is a setting of a fixed-effect GLM"):
        GameConfig.from_dict(data)
    data = example()
    data["coordinates"]["global"]["intercept_l2"] = 0.5
    with pytest.raises(ConfigError, match="coordinates.global.*intercept_l2 is a setting of a random effect"):
        GameConfig.from_dict(data)


def test_l2_auto_reaches_the_random_effect_trainer_and_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    data = example()
    data["coordinates"]["per-user"].update(l2="auto", intercept_l2="auto")
    data["coordinates"]["global"].update(l2="auto")
    config = GameConfig.from_dict(data)
    assert [(run["global"], run["per-user"]) for run in config.grid()] == [(("auto", 0.0), ("auto", 0.0))]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    build_project(config, tmp_path / "project")
    flow = (tmp_path / "project" / f"{config.name}.flow").read_text()
    assert "--l2 auto --intercept-l2 auto" in flow
    assert "--l2 auto" in JobSpec.from_yaml(tmp_path / "project" / "specs" / "p0-global.yaml").tasks["worker"].command
    for coordinate, change, message in [
            ("global", {"l2": "auto", "l1": 0.1}, "coordinates.global: .*set l1 to 0"),
            ("per-user", {"l2": "auto", "l1": 0.1}, "coordinates.per-user: .*set l1 to 0"),
            ("per-user", {"l2": "sometimes"}, "coordinates.per-user.l2")]:
        data = example()
        data["coordinates"][coordinate].update(change)
        with pytest.raises(ConfigError, match=message):
            GameConfig.from_dict(data)


@pytest.mark.parametrize("method", ["sobol", "halton", "latin-hypercube", "random"])
def test_a_search_spreads_its_budget_over_the_ranges_and_runs_as_a_grid(tmp_path: Path, method: str) -> None:
    data = example(search={"trials": 6, "method": method, "seed": 3, "space": {
        "global.l1": {"low": 1e-3, "high": 10.0}, "per-user.l2": {"low": 0.5, "high": 2.5, "log": False}}})
    config = GameConfig.from_dict(data)
    runs = config.grid()
    assert len(runs) == 6 and len({run["global"] for run in runs}) == 6
    assert all(1e-3 <= run["global"][1] <= 10 and run["global"][0] == 1.0 for run in runs)
    assert all(0.5 <= run["per-user"][0] <= 2.5 and run["per-user"][1] == 0.0 for run in runs)
    assert all(run["per-movie"] == runs[0]["per-movie"] for run in runs)            # not searched
    logs = np.log10([run["global"][1] for run in runs])
    assert logs.min() < -1 and logs.max() > 0          # spread over the decades, not bunched
    assert GameConfig.from_dict(data).grid() == runs   # the same points whenever the flow is built
    assert GameConfig.from_dict({**data, "search": {**data["search"], "seed": 4}}).grid() != runs
    plan = GamePlan(config)
    assert len(plan.runs()) == 6
    build_project(config, tmp_path / "project")
    for k, run in enumerate(runs):     # run k's fixed-effect command carries its drawn L1 weight
        command = JobSpec.from_yaml(tmp_path / "project" / "specs" / f"r{k}-p0-global.yaml").tasks["worker"].command
        assert f"--l1 {run['global'][1]} " in command, command


@pytest.mark.parametrize("search, message", [
    ({"trials": 2, "space": {"nope.l1": {"low": 0.1, "high": 1}}}, "search.space.nope.l1: no GLM coordinate named 'nope'"),
    ({"trials": 2, "space": {"global.l3": {"low": 0.1, "high": 1}}}, "space.global.l3: keys are COORDINATE.l1 or"),
    ({"trials": 2, "space": {"global.l1": {"low": 0.0, "high": 1}}}, "a log-scale range needs low > 0"),
    ({"trials": 2, "space": {"global.l1": {"low": 2.0, "high": 1}}}, "high must be above low"),
    ({"trials": 0, "space": {"global.l1": {"low": 0.1, "high": 1}}}, "search.trials"),
])
def test_search_errors_name_the_key(search: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GameConfig.from_dict(example(search=search))
    data = example(search={"trials": 2, "space": {"global.l1": {"low": 0.1, "high": 1}}})
    data["coordinates"]["per-user"]["l2"] = [1.0, 2.0]
    with pytest.raises(ConfigError, match="coordinates.per-user has a list of weights .a grid.; a flow runs a grid or"):
        GameConfig.from_dict(data)


def test_fixed_effect_compute_and_solver_reach_the_trainer(tmp_path: Path) -> None:
    data = example()
    data["coordinates"]["global"].update(compute="scipy", solver="tron")
    build_project(GameConfig.from_dict(data), tmp_path / "p")
    command = JobSpec.from_yaml(tmp_path / "p" / "specs" / "p0-global.yaml").tasks["worker"].command
    assert "--compute scipy" in command and "--solver tron" in command
    build_project(GameConfig.from_dict(example()), tmp_path / "default")
    assert "--compute" not in JobSpec.from_yaml(tmp_path / "default" / "specs" / "p0-global.yaml").tasks["worker"].command


def test_plan_unrolls_passes_and_chains_offsets() -> None:
    plan = GamePlan(GameConfig.from_yaml(EXAMPLE))
    steps = plan.steps()
    assert [s.label for s in steps] == [f"pass-{p}/{c}" for p in (0, 1) for c in ("global", "per-user", "per-movie")]
    assert steps[0].offsets == () and steps[0].warm_start is None
    assert steps[1].offsets == (steps[0].output + "/scores/train",)
    # the other coordinates' newest training scores: pass 1's global, pass 0's per-movie
    assert steps[4].offsets == (steps[3].output + "/scores/train", steps[2].output + "/scores/train")
    assert steps[3].warm_start == steps[0].output          # pass 1 starts from pass 0's model
    assert [m.name for m in steps[1].models] == ["global", "per-user"]
    assert steps[4].models[0].directory == steps[3].output  # the newest model of each coordinate


def test_flow_nodes_edges_and_commands(tmp_path: Path) -> None:
    config = GameConfig.from_yaml(EXAMPLE)
    flow = read_project(build_project(config, tmp_path / "project"))
    nodes = {n.name: n for n in flow.nodes}
    # index, prepare (both splits), partition (both random effects), passes (the fixed effect's train and
    # score, a random effect's one node), best + report
    assert len(nodes) == 1 + 1 + 1 + 2 * (2 + 1 + 1) + 2
    assert "--shards '[{\"name\":\"global\",\"bags\":[\"features\",\"userFeatures\",\"movieFeatures\"]}," \
        in nodes["index"].command
    # trains follow trains: a score node (which evaluates) only feeds the choice of the best step
    assert nodes["p1-global-train"].depends_on == ["prepare", "p0-per-movie"]
    assert nodes["partition"].depends_on == ["index"]
    game = "hdfs:///glmix/movielens/game"
    # one Spark application each: both splits side by side, both random effects side by side
    prepare = TogetherArgs.from_argv(shlex.split(nodes["prepare"].command.split("jobs/together.py ")[1]))
    assert [[(job.PROG, job.output) for job in group] for group in prepare.groups] == [
        [("prepare_fixed_effect", f"{game}/prepared/global/{split}") for split in ("train", "validation")]]
    partition = TogetherArgs.from_argv(shlex.split(nodes["partition"].command.split("jobs/together.py ")[1]))
    assert [[(job.PROG, job.entity_field) for job in group] for group in partition.groups] == [
        [("partition_random_effect", "userId"), ("partition_random_effect", "movieId")]]
    assert "--offsets" not in nodes["partition"].command
    # a random effect's step trains, then scores what it trained, in one application
    assert nodes["p1-per-user"].depends_on == ["partition", "p1-global-train"]
    step = TogetherArgs.from_argv(shlex.split(nodes["p1-per-user"].command.split("jobs/together.py ")[1]))
    (train,), (scoring,) = step.groups
    assert isinstance(train, TrainRandomEffectArgs) and isinstance(scoring, ScoreArgs)
    assert train.offsets == [f"{game}/run-0/pass-1/global/scores/train", f"{game}/run-0/pass-0/per-movie/scores/train"]
    assert train.intercept_l2 == 0.6
    score = nodes["p1-per-user"].command.split(" --then ")[1]
    assert "--data validation=" in score and "train=" not in score
    assert f"--metrics {game}/run-0/pass-1/per-user.metrics" in score and "--evaluators AUC" in score
    assert f"--scores global={game}/run-0/pass-1/global --random-effect per-user=userId={game}/run-0/pass-1/per-user " \
        f"--random-effect per-movie=movieId={game}/run-0/pass-0/per-movie " in score
    assert nodes["p1-global"].depends_on == ["p1-global-train"]
    assert "/jobs/score.py " in nodes["p1-global"].command and "--data validation=" in nodes["p1-global"].command
    assert nodes["p0-per-user"].command.startswith("${spark.submit} --master ${spark.master}")
    assert nodes["p0-global-train"].command == \
        "${glmix.python} -m launcher submit specs/p0-global.yaml --backend ${launcher.backend} ${launcher.options}"
    assert nodes["select-best"].depends_on == [f"p{p}-{c}" for p in (0, 1) for c in ("global", "per-user", "per-movie")]
    assert all({k: n.config[k] for k in ("retries", "retry.backoff")} == {"retries": "1", "retry.backoff": "30000"}
               for n in flow.nodes)
    # what the runner needs to know when a stage's earlier run still stands (glmix.flow.run_state)
    assert nodes["partition"].config["glmix.outputs"].split() == [f"{game}/partitions/{re}"
                                                                  for re in ("per-user", "per-movie")]
    assert nodes["partition"].config["glmix.inputs"] == "hdfs:///glmix/movielens/data/train"
    assert nodes["p0-per-user"].config["glmix.outputs"].split() == [
        f"{game}/run-0/pass-0/per-user", f"{game}/run-0/pass-0/per-user.scores", f"{game}/run-0/pass-0/per-user.metrics"]
    assert nodes["index"].config["glmix.outputs"].split() == [f"hdfs:///glmix/movielens/game/index/{s}"
                                                              for s in ("global", "movie", "user")]
    assert flow.config["glmix.state"] == "hdfs:///glmix/movielens/game/_flow"
    spec = JobSpec.from_yaml(tmp_path / "project" / "specs" / "p1-global.yaml")
    assert spec.tasks["worker"].instances == 2 and spec.max_attempts == 2
    assert f"--offsets {game}/run-0/pass-0/per-user/scores/train {game}/run-0/pass-0/per-movie/scores/train" \
        in spec.tasks["worker"].command


def test_in_process_runner_gives_its_session_the_configured_driver_memory(tmp_path: Path) -> None:
    """On local[N] the driver does all the work: ``resources.spark.driver_memory`` must reach the session
    the runner makes (it once kept Spark's 1g whatever the config said)."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["resources"]["spark"] = {**raw["resources"].get("spark", {}), "master": "local[2]", "driver_memory": "3g"}
    runner = LocalRunner(build_project(GameConfig.from_dict(raw), tmp_path / "project"))
    node = next(n for n in runner.flow.nodes if n.name == "partition")
    options, rest = submit_options(shlex.split(runner.command(node))[1:])
    assert rest[0].endswith("jobs/together.py")
    conf = spark_conf(app_name="test", **session_settings(options))
    assert (conf["spark.master"], conf["spark.driver.memory"]) == ("local[2]", "3g")


def test_flow_run_starts_its_jvm_quick_only_for_small_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``glmix flow run`` (``--jvm auto``) chooses as ``glmix train`` does, from the project's config: its
    default was a quick start whatever the size (a 1M-row flow: 215 s quick, 169 s peak)."""
    from glmix.game.training import project_starts_quick

    for split in ("train", "validation"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "part-0.avro").write_bytes(b"x" * 1000)
    config = GameConfig.from_dict(example(input={"train": str(tmp_path / "train"),
                                                 "validation": str(tmp_path / "validation")}))
    project = build_project(config, tmp_path / "project")
    assert project_starts_quick(project)
    monkeypatch.setattr(sys.modules["glmix.spark.session"], "QUICK_START_MAX_BYTES", 1999)  # 2,000 bytes: large
    assert not project_starts_quick(project)
    (tmp_path / "train" / "part-0.avro").unlink()
    (tmp_path / "train").rmdir()
    assert project_starts_quick(project)                  # inputs not there yet: a scheduled flow will wait
    (tmp_path / "hand-written").mkdir()
    assert project_starts_quick(tmp_path / "hand-written")   # not a glmix project


def test_project_file_and_zip_layout(tmp_path: Path) -> None:
    project = build_project(GameConfig.from_yaml(EXAMPLE), tmp_path / "project")
    assert (project / "movielens-glmix.project").read_text() == "azkaban-flow-version: 2.0\n"
    archive = zip_project(project, tmp_path / "movielens.zip")
    with zipfile.ZipFile(archive) as z:
        names = set(z.namelist())
    assert {"movielens-glmix.project", "movielens-glmix.flow", "config.yaml", "specs/p0-global.yaml"} <= names
    assert all(not n.startswith("project/") for n in names)


def test_example_azkaban_project_is_up_to_date(tmp_path: Path) -> None:
    """azkaban/movielens is generated from configs/movielens.yaml; regenerate it when this fails:
    glmix flow build configs/movielens.yaml azkaban/movielens"""
    fresh = build_project(GameConfig.from_yaml(EXAMPLE), tmp_path / "fresh")
    committed = REPO / "azkaban" / "movielens"
    files = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(committed)) for p in committed.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, files, shallow=False)
    assert not mismatch and not errors


def flow_with(*nodes: dict, config: dict | None = None) -> dict:
    return {"config": config or {}, "nodes": list(nodes)}


def node(name: str, *depends: str, **config) -> dict:
    out = {"name": name, "type": "command", "config": {"command": "true", **config}}
    if depends:
        out["dependsOn"] = list(depends)
    return out


@pytest.mark.parametrize("flow, message", [
    (flow_with(node("a"), node("a")), r"flow f: node names must be unique \(a repeated\)"),
    (flow_with(node("a", "b")), "flow f, node a: dependsOn names no node 'b'"),
    (flow_with(node("a", "b"), node("b", "c"), node("c", "a")), "flow f: dependency cycle a -> b -> c -> a"),
    (flow_with(node("ROOT")), "flow f, node ROOT: the name is reserved"),
    ({"nodes": [{"name": "a"}]}, "flow f, node a: needs a type"),
])
def test_validator_enforces_azkaban_loader_rules(flow: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_flow(flow, "f")


def test_validator_accepts_a_diamond() -> None:
    validate_flow(flow_with(node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")))


def test_keras_and_external_coordinates_in_the_flow(tmp_path: Path) -> None:
    data = example(update_sequence=["global", "per-user"])
    data["coordinates"] = {
        "global": {"type": "fixed", "shard": "global", "model_type": "keras",
                   "keras": {"optimizer": "rmsprop", "steps_per_epoch": 10, "model_args": {"hidden": [8]}}},
        "per-user": data["coordinates"]["per-user"]}
    flow = read_project(build_project(GameConfig.from_dict(data), tmp_path / "keras"))
    command = JobSpec.from_yaml(tmp_path / "keras" / "specs" / "p1-global.yaml").tasks["worker"].command
    assert command.startswith("python -m glmix.train.keras_fixed_effect ")
    assert "--optimizer rmsprop" in command and "--steps-per-epoch 10" in command
    assert "--model-args '{\"hidden\": [8]}'" in command and "--warm-start" not in command
    score = next(n for n in flow.nodes if n.name == "p0-per-user").command
    assert "--scores global=hdfs:///glmix/movielens/game/run-0/pass-0/global " in score

    data["coordinates"]["global"] = {"type": "external", "scores": {"train": "hdfs:///s/t", "validation": "hdfs:///s/v"}}
    flow = read_project(build_project(GameConfig.from_dict(data), tmp_path / "external"))
    names = [n.name for n in flow.nodes]
    index = next(n for n in flow.nodes if n.name == "index").command
    assert "prepare" not in names and '"name":"global"' not in index and '"name":"movie"' in index
    train = next(n for n in flow.nodes if n.name == "p0-global-train").command
    assert train.startswith("${glmix.python} -m glmix.train.external_scores --train hdfs:///s/t --validation hdfs:///s/v")


def test_renamed_columns_reach_every_data_job(tmp_path: Path) -> None:
    names = {"response": "liked", "uid": None, "weight": "w", "offset": "o", "metadata_map": "meta"}
    flow = read_project(build_project(GameConfig.from_dict(example(columns=names)), tmp_path / "p"))
    readers = [n for n in flow.nodes if any(job in n.command for job in
                                            ("index_features", "prepare_fixed_effect", "partition_random", "score.py"))]
    expected = """--columns '{"response":"liked","uid":null,"weight":"w","offset":"o","metadata_map":"meta"}'"""
    assert PrepareArgs.from_argv(shlex.split(expected) + ["--input", "i", "--index", "x", "--output", "o"]
                                 ).columns == ColumnNames(**names)
    assert readers and all(expected in n.command for n in readers)
