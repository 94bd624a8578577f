"""Azkaban's own Flow 2.0 loader (3.58.0, from Maven Central; tests/azkaban_loader) as the oracle:
it loads every project glmix generates, and `glmix flow validate` agrees with it on a corpus that
covers the format (tests/flow_corpus.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from glmix.errors import ConfigError
from glmix.flow.azkaban import FLOW_VERSION_LINE, validate_project
from glmix.game.config import GameConfig
from glmix.game.flow_builder import build_project
from tests.flow_corpus import INVALID, VALID, write_corpus

REPO = Path(__file__).resolve().parents[1]
LOADER = REPO / ".cache" / "azkaban"


def azkaban_load(projects: list[Path]) -> dict[Path, dict]:
    """Each project as Azkaban's loader sees it: its flows and its errors (one JVM for all)."""
    assert (LOADER / "classes" / "LoadProjects.class").exists(), "run `make azkaban-loader` first"
    result = subprocess.run(["java", "-cp", f"{LOADER / 'classes'}:{LOADER / 'jars'}/*", "LoadProjects",
                             *map(str, projects)], capture_output=True, text=True, timeout=300, check=True)
    loaded = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(item["project"]): item for item in loaded}


def test_validate_agrees_with_azkaban_on_every_project_of_the_corpus(tmp_path: Path) -> None:
    projects = write_corpus(tmp_path)
    for directory in projects.values():
        (directory / "p.project").write_text(FLOW_VERSION_LINE)
    verdicts = azkaban_load(list(projects.values()))
    for name, directory in projects.items():
        azkaban = verdicts[directory]
        assert (name in VALID) == (not azkaban["errors"]), f"{name}: the corpus expects otherwise: {azkaban}"
        if name in VALID:
            assert validate_project(directory) == azkaban["flows"], name
        else:
            with pytest.raises(ConfigError) as refused:
                validate_project(directory)
            assert "flow a" in str(refused.value), f"{name}: {refused.value}"   # names the flow
    assert len(VALID) >= 10 and len(INVALID) >= 20


def test_azkaban_loads_every_project_glmix_generates(tmp_path: Path) -> None:
    configs = {path.stem: GameConfig.from_yaml(path) for path in sorted((REPO / "configs").glob("*.yaml"))}
    projects = [build_project(config, tmp_path / name) for name, config in configs.items()]
    projects.append(REPO / "azkaban" / "movielens")
    verdicts = azkaban_load(projects)
    for project in projects:
        assert verdicts[project]["errors"] == [], project
        assert verdicts[project]["flows"] == validate_project(project)


def test_the_cli_prints_a_problem_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glmix.cli import main

    project = write_corpus(tmp_path)["trigger-bad-cron"]
    (project / "p.project").write_text(FLOW_VERSION_LINE)
    assert main(["flow", "validate", str(project)]) != 0
    printed = capsys.readouterr()
    assert "flow a: trigger: schedule value 'every day' is not a Quartz cron expression" in printed.err + printed.out
    assert "day-of-week [year])" in printed.err + printed.out   # brackets are text, not console markup
