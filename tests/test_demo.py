"""The embedded GAME flow end to end (what `make demo` runs), resuming after a failure, and the report."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from glmix.cli import main
from glmix.data.feature_index import FeatureIndex
from glmix.data.synthetic import generate, movielens_spec
from glmix.errors import GlmixError
from glmix.flow.azkaban import Flow, Node, write_project
from glmix.flow.runner import LocalRunner
from glmix.game.config import GameConfig
from glmix.game.demo import true_margins
from glmix.game.flow_builder import build_project
from glmix.game.report import hosmer_lemeshow
from glmix.glm.metrics import auc
from glmix.io.avro import read_avro_records
from glmix.model.game_model import read_game_model
from glmix.registry import ModelRegistry
from glmix.registry.gate import decide


def test_demo_trains_glmix_and_beats_the_global_model(tmp_path: Path, capsys, spark) -> None:
    assert main(["demo", "--output", str(tmp_path), "--rows", "8000"]) == 0
    printed = capsys.readouterr().out
    assert "validation metrics after each coordinate update" in printed and "ground-truth model" in printed
    summary = json.loads((tmp_path / "game" / "summary.json").read_text())
    steps = summary["steps"]
    assert [(s["pass"], s["coordinate"]) for s in steps] == [(p, c) for p in (0, 1)
                                                             for c in ("global", "per-user", "per-movie")]
    auc_of = [s["metrics"]["AUC"] for s in steps]
    labels, margins = true_margins(str(tmp_path / "data"))
    assert 0.55 < auc_of[0] < auc_of[2] < auc(labels, margins)   # random effects add what the global GLM misses
    assert summary["best"] == int(np.argmax(auc_of))
    models, metadata = read_game_model(str(tmp_path / "game" / "best"))
    assert [m.name for m in models] == ["global", "per-user", "per-movie"]
    assert metadata["metrics"]["AUC"] == max(auc_of)
    assert metadata["modelType"] == "LOGISTIC_REGRESSION"   # what Photon ML's loader reads, with id-info
    assert (tmp_path / "game" / "best" / "random-effect" / "per-movie" / "id-info").read_text() == "movieId\nuser\n"
    page = (tmp_path / "game" / "report" / "index.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == 5
    assert re.search(r"Hosmer-Lemeshow statistic [0-9.]+ over 10 deciles .*: p = ", page)
    assert "per-movie" in page and "<table>" in page and "<h2>Model summary</h2>" in page
    # the model summary (issue 24): the report's JSON and `glmix summary` read the published model
    model = json.loads((tmp_path / "game" / "report" / "model-summary.json").read_text())
    [fixed] = model["fixed_effects"]
    assert fixed["name"] == "global" and fixed["rows"] > 4000 and fixed["variance"] == "none"
    assert fixed["coefficients"][0]["feature"] == "(INTERCEPT)" and fixed["coefficients"][0]["std_error"] is None
    per_user = next(r for r in model["random_effects"] if r["name"] == "per-user")
    assert per_user["entity_field"] == "userId" and per_user["entities"] > 100
    assert 0.9 * fixed["rows"] < per_user["rows"] <= fixed["rows"]     # the active entities' rows
    assert per_user["prior_variance"]["intercept"] == pytest.approx(1 / 0.6)    # the demo's intercept_l2
    assert 0 < per_user["estimates"]["intercept"]["variance"] < 1 / 0.6        # shrunk towards 0 by the prior
    assert main(["summary", str(tmp_path / "game" / "best"), "--top", "5"]) == 0
    printed = capsys.readouterr().out
    assert "fixed effect global" in printed and "5 of" in printed and "variance components" in printed

    # serving (issue 23): the chosen model as a bundle scores every validation row as the Spark job did
    chosen = steps[summary["best"]]
    scores = (tmp_path / "game" / f"run-{chosen['run']}" / f"pass-{chosen['pass']}" / f"{chosen['coordinate']}.scores"
              / "validation")
    bundle = tmp_path / "bundle"
    assert main(["bundle", "export", "--model", str(tmp_path / "game" / "best"), "--output", str(bundle),
                 "--shards", "2"]) == 0
    capsys.readouterr()
    assert main(["bundle", "parity", "--bundle", str(bundle), "--data", str(tmp_path / "data" / "validation"),
                 "--scores", str(scores), "--json"]) == 0
    parity = json.loads(capsys.readouterr().out)
    assert parity["passed"] and parity["max_abs_difference"] < 1e-9
    assert parity["rows"] == sum(1 for _ in read_avro_records(str(scores))) > 1000


def small_config(tmp_path: Path) -> GameConfig:
    generate(movielens_spec(rows=4000, seed=2), str(tmp_path / "data"))
    return GameConfig.from_dict({
        "name": "resume-test", "task": "logistic",
        "input": {"train": str(tmp_path / "data" / "train"), "validation": str(tmp_path / "data" / "validation")},
        "output": str(tmp_path / "out"),
        "feature_shards": [{"name": "global", "bags": ["features", "userFeatures"]},
                           {"name": "movie", "bags": ["movieFeatures"]}],
        "coordinates": {"global": {"type": "fixed", "shard": "global", "compute": "scipy"},
                        "per-user": {"type": "random", "shard": "movie", "entity_field": "userId"}},
        "update_sequence": ["global", "per-user"], "evaluators": ["AUC", "AUC:userId"],
        "resources": {"spark": {"partitions": 2}}, "flow": {"retries": 0}})


def test_runner_resumes_at_the_first_unfinished_stage(tmp_path: Path, spark) -> None:
    """Resuming after a failure and after an output was deleted (the state lives with the output);
    the model gate registers and promotes the chosen model, or rejects it (issue 22)."""
    registry = ModelRegistry(str(tmp_path / "registry"))
    config = GameConfig.from_dict({**small_config(tmp_path).to_dict(), "registry": {"root": registry.root},
                                   "data_gate": {"features": 5}})
    project = build_project(config, tmp_path / "project")
    flow_file = project / "resume-test.flow"
    good = flow_file.read_text()
    flow = yaml.safe_load(good)
    for node in flow["nodes"]:
        if node["name"] == "p0-per-user":
            node["config"]["command"] = "exit 3"
    flow_file.write_text(yaml.safe_dump(flow, sort_keys=False, width=1000))
    first = LocalRunner(project).run()
    assert [r.status for r in first][-1] == "failed" and first[-1].name == "p0-per-user"
    assert first[-1].error == "exit code 3"
    assert all(r.status == "succeeded" for r in first[:-1])
    assert not (tmp_path / "out" / "run-0" / "pass-0" / "per-user").exists()

    flow_file.write_text(good)   # fixed: the same command line again resumes
    second = LocalRunner(project).run()
    statuses = {r.name: r.status for r in second}
    assert all(statuses[r.name] == "skipped" for r in first[:-1]), statuses
    assert statuses["p0-per-user"] == "succeeded" and statuses["report"] == "succeeded"
    state = json.loads((tmp_path / "out" / "_flow" / "state.json").read_text())   # with the output, not the project
    assert all(s["status"] == "succeeded" for s in state.values()) and len(state) == len(second)
    log = (project / ".glmix-run" / "logs" / "partition.log").read_text()
    assert log.startswith("$ ") and '"job": "partition_random_effect"' in log

    gate = json.loads((tmp_path / "out" / "gate" / "gate.json").read_text())
    assert gate["verdict"] == "promoted: the first version" and registry.production("resume-test") == 1
    # the data gate ran first; its window statistics are kept with the version, for the next runs' gates
    assert first[0].name == "data-gate" and {first[1].name, first[2].name} == {"index", "production"}
    kept = json.loads((Path(registry.version("resume-test", 1).uri) / "data-stats.json").read_text())
    assert kept == json.loads((tmp_path / "out" / "data-gate" / "stats.json").read_text())
    assert len(kept["features"]) == 5 and kept["rows"] > 3000

    # an output deleted since: its stage and the stages after it run again, from another project
    # directory too (another machine: the state lives with the output)
    shutil.rmtree(tmp_path / "out" / "run-0" / "pass-0" / "per-user.metrics")
    third = LocalRunner(build_project(config, tmp_path / "elsewhere")).run()
    ran = [r.name for r in third if r.status == "succeeded"]
    assert sorted(ran) == sorted(["p0-per-user", "select-best", "report", "track", "production",
                                  "production-score", "gate"]), ran
    assert len(registry.runs("resume-test")) == 2     # each run that finished was recorded (run tracking)
    assert not (tmp_path / "out" / "_flow" / "lease.json").exists()   # released
    # the same model again, against production (version 1) on the same rows: equal metrics pass
    gate = json.loads((tmp_path / "out" / "gate" / "gate.json").read_text())
    assert gate["production_version"] == 1 and gate["candidate_version"] == 2 and gate["passed"]
    assert gate["metrics"][0]["candidate"] == pytest.approx(gate["metrics"][0]["production"], abs=1e-12)
    # the same scores up to rounding (the fixed effect's are its trainer's own on one side, the
    # scoring job's on the other): ties broken differently move the empirical CDFs by a row or so
    assert gate["score_shift"]["ks_statistic"] < 0.005 and gate["score_shift"]["rows"] > 500
    assert "<img src=\"data:image/png;base64," in (tmp_path / "out" / "gate" / "index.html").read_text()
    assert [(v.number, v.state) for v in registry.versions("resume-test")] == [(1, "archived"), (2, "production")]

    # what registering recorded of how the model was made
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    version = registry.version("resume-test", 2)
    facts = version.metadata
    assert facts["metrics"] == summary["steps"][summary["best"]]["metrics"]
    assert facts["config"] == config.to_dict() and len(facts["config_digest"]) == 16
    assert facts["rows"]["train_used"] == facts["rows"]["train_read"] > 3000
    assert {s: f["features"] for s, f in facts["shards"].items()} == \
        {s: FeatureIndex.load(str(tmp_path / "out" / "index" / s)).size for s in ("global", "movie")}
    assert len(registry.features(version)["movie"]) == facts["shards"]["movie"]["features"]
    assert len(facts["code"]["commit"]) == 40 and (Path(version.model_uri) / "model-metadata.json").exists()

    # a production version that did better on these rows: the candidate is rejected, production stays
    metrics = tmp_path / "out" / "production.metrics" / "metrics.json"
    better = json.loads(metrics.read_text())
    better["metrics"]["AUC"] = 0.999
    metrics.write_text(json.dumps(better))
    with pytest.raises(GlmixError, match=r"model gate: resume-test version 3 rejected: AUC 0.\d+ vs production "
                                         r"0.999 \(tolerance 0\); report .*/gate/index.html"):
        decide(config)
    assert registry.version("resume-test", 3).state == "rejected" and registry.production("resume-test") == 2


def test_runner_runs_ready_stages_at_once_each_with_its_own_log(tmp_path: Path) -> None:
    """'waits' finishes only once 'starts' has run, so one stage at a time cannot pass it; 'left'
    and 'right' print in-process at the same time, each into its own log."""
    python = sys.executable
    nodes = [Node("waits", "for i in $(seq 40); do [ -f started ] && exit 0; sleep 0.05; done; exit 1"),
             Node("starts", "touch started"),
             Node("left", f"{python} -m tests.flow_node_printer left"),
             Node("right", f"{python} -m tests.flow_node_printer right"),
             Node("last", "true", ["waits", "left", "right"])]
    project = write_project(tmp_path / "project", "concurrency", Flow("concurrency", nodes), {})
    results = LocalRunner(project, parallel=4).run()
    assert [r.name for r in results] == ["waits", "starts", "left", "right", "last"]
    assert all(r.status == "succeeded" for r in results)
    for name in ("left", "right"):
        lines = (project / ".glmix-run" / "logs" / f"{name}.log").read_text().splitlines()
        assert lines[0].startswith("$ ") and len(lines) == 101
        assert all(line.startswith(f"{name} ") for line in lines[1:])

    (project / "started").unlink()
    serial = {r.name: r.status for r in LocalRunner(project, parallel=1).run(restart=True)}
    assert serial == {"waits": "failed"}


def test_hosmer_lemeshow_by_hand() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 1000)
    y = (rng.uniform(size=1000) < p).astype(float)
    statistic, p_value, bins = hosmer_lemeshow(y, p)
    order = np.argsort(p, kind="stable")
    expected = sum((y[c].sum() - p[c].sum()) ** 2 / (p[c].sum() * (1 - p[c].mean()))
                   for c in np.array_split(order, 10))
    assert statistic == pytest.approx(expected) and len(bins) == 10
    assert p_value > 0.01                                   # calibrated by construction
    assert hosmer_lemeshow(y, np.clip(p * 0.5, 0, 1))[1] < 1e-6   # badly calibrated
