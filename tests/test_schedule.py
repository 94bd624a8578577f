"""Scheduled flows (issue 22, item 2): the config's schedule as the .flow's Azkaban trigger, the first
stage waiting (bounded) for the run's input days, and `glmix flow run --date` for one instance.
Azkaban's own loader checks configs/movielens-daily.yaml's project (tests/test_azkaban_loader.py)."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmix.cli import main
from glmix.errors import ConfigError, GlmixError
from glmix.flow.azkaban import Flow, Node, read_project, validate_project, write_project
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from glmix.game.wait_input import main as wait_main
from glmix.game.wait_input import wait_for_input

REPO = Path(__file__).resolve().parents[1]


def daily(tmp_path: Path, **changes: Any) -> GameConfig:
    raw = yaml.safe_load((REPO / "configs" / "movielens-daily.yaml").read_text())
    raw.update({"input": {"train": str(tmp_path / "train"), "validation": str(tmp_path / "validation"),
                          "train_dates": {"last_days": 3}, "validation_dates": {"last_days": 1}},
                "output": str(tmp_path / "out")}, **changes)
    return GameConfig.from_dict(raw)


def test_schedule_settings_are_checked_and_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"schedule.cron: .*'0 0 2 \* \* \*' is not a Quartz cron expression"):
        daily(tmp_path, schedule={"cron": "0 0 2 * * *"})   # Quartz needs '?' in one of the day fields
    with pytest.raises(ConfigError, match="schedule: a scheduled flow reads dated input"):
        GameConfig.from_dict({**daily(tmp_path).to_dict(), "input": {"train": "t", "validation": "v"}})
    with pytest.raises(ConfigError, match=r"output: flow properties \(\$\{...\}\) are not substituted"):
        daily(tmp_path, output="/x/${glmix.run.date}")


def test_a_scheduled_config_makes_a_triggered_flow_that_waits_for_its_input(tmp_path: Path) -> None:
    config = daily(tmp_path).resolved(tmp_path)
    assert config.input.train_dates is not None     # kept by resolved() (it used to drop the dates)
    project = build_project(config, tmp_path / "project")
    flow = yaml.safe_load((project / "movielens-daily.flow").read_text())
    assert flow["trigger"] == {"schedule": {"type": "cron", "value": "0 0 2 ? * *"}}
    assert validate_project(project) == ["movielens-daily"]
    nodes = {n["name"]: n for n in flow["nodes"]}
    # wait for the days, check them against production's training days, then train
    assert flow["nodes"][0]["name"] == "wait-input" and nodes["data-gate"]["dependsOn"] == ["wait-input"]
    assert nodes["index"]["dependsOn"] == ["data-gate"]
    for name in ("data-gate", "index"):
        assert "--run-date '${glmix.run.date}'" in nodes[name]["config"]["command"]
    assert read_project(project).trigger == flow["trigger"]


def test_a_retraining_flow_starts_from_the_production_version(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retrain.prior: coordinates.global publishes no variances"):
        daily(tmp_path, retrain={"prior": True})
    with pytest.raises(ConfigError, match="retrain: .* needs a registry section"):
        daily(tmp_path, retrain={}, registry=None, data_gate=None)
    raw = daily(tmp_path).to_dict()
    for coordinate in raw["coordinates"].values():
        coordinate["variance"] = "simple"
    config = GameConfig.from_dict({**raw, "retrain": {"warm_start": True, "prior": True, "prior_weight": 0.5}})
    project = build_project(config, tmp_path / "project")
    nodes = {n.name: n for n in read_project(project).nodes}
    assert nodes["production"].depends_on == ["data-gate"]       # which version, as the run starts
    # the fixed effect's train nodes, and the random effects' step nodes (they train, then score)
    trains = [n for n in nodes if re.fullmatch(r"p\d+-(global-train|per-.+)", n)]
    assert len(trains) == 6 and all("production" in nodes[n].depends_on for n in trains)
    pointer = str(tmp_path / "out" / "production.json")
    for name in trains:
        text = (project / "specs" / f"{name.removesuffix('-train')}.yaml").read_text() if "global" in name \
            else nodes[name].command
        assert pointer in text and "--production-warm-start" in text and "--production-prior" in text
        assert "--incremental-weight 0.5" in text
    assert nodes["production-score"].depends_on == ["production", "select-best"]


def write_day(root: Path, day: str, complete: bool = True) -> None:
    directory = root / "daily" / day.replace("-", "/")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "part-0.avro").write_bytes(b"x")
    if complete:
        (directory / "_SUCCESS").write_bytes(b"")


def test_the_wait_fails_naming_the_first_missing_day_or_passes_when_it_arrives(tmp_path: Path) -> None:
    config = daily(tmp_path, schedule={"cron": "0 0 2 ? * *", "input_wait_minutes": 0.02, "poll_seconds": 0.1})
    for day in ("2026-11-28", "2026-11-29"):
        write_day(tmp_path / "train", day)
    write_day(tmp_path / "train", "2026-11-30", complete=False)   # still being written
    write_day(tmp_path / "validation", "2026-11-30")
    with pytest.raises(GlmixError, match=r"input for run date 2026-12-01 not ready after 0.02 min: 1 day marker\(s\) "
                                         r"missing, first .*/train/daily/2026/11/30/_SUCCESS"):
        wait_for_input(config, "2026-12-01", say=lambda line: None)
    threading.Timer(0.3, lambda: (tmp_path / "train" / "daily" / "2026/11/30" / "_SUCCESS").write_bytes(b"")).start()
    said: list[str] = []
    assert wait_for_input(config, "2026-12-01", say=said.append) == "input of 2026-12-01 complete"
    assert said and said[0].startswith("waiting for 1 input day(s), first ")
    # as the flow's first stage runs it: the config in the project directory, the run date as argument
    project = build_project(config, tmp_path / "project")
    log = io.StringIO()
    assert wait_main(["config.yaml", "2026-12-01"], out=log, cwd=project) == 0
    assert "input of 2026-12-01 complete" in log.getvalue()
    assert wait_main(["config.yaml", "2026-12-09"], out=log, cwd=project) == 1
    assert "error: input for run date 2026-12-09 not ready" in log.getvalue()


def test_flow_run_date_runs_the_instance_of_one_day(tmp_path: Path) -> None:
    node = Node("day", f"echo ${{glmix.run.date}} > {tmp_path}/ran-for")
    project = write_project(tmp_path / "p", "p", Flow("p", [node], {"glmix.run.date": "${azkaban.flow.start.year}"}), {})
    assert main(["flow", "run", str(project), "--date", "2026-12-01"]) == 0
    assert (tmp_path / "ran-for").read_text().strip() == "2026-12-01"
