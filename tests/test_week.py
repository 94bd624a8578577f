"""The recurring loop over a simulated week (issue 22 item 7): seven days of one world in which day
5's most frequent feature drifts and day 6's labels are shuffled. The scheduled flow promotes days
1-4 and 7, stops day 5 at the data gate and day 6 at the model gate, each with its report, and
``production`` always points at the last good version. ``bench/bench_week.py`` runs the same week
larger (and on the dev cluster) and adds what a day costs."""

from __future__ import annotations

from pathlib import Path

from bench.bench_week import BROKEN_DAY, DRIFT_DAY, DRIFTED, EXPECTED, MODEL, simulate_week, week_problems
from glmix.flow.azkaban import validate_project
from glmix.registry import ModelRegistry
from tests.test_azkaban_loader import azkaban_load


def test_a_week_promotes_good_days_and_stops_the_drifted_and_the_mislabelled_ones(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    days, project = simulate_week(root, tmp_path, rows_per_day=1_500, master="local[2]")
    registry = ModelRegistry(f"{root}/registry")
    assert week_problems(days, registry) == []
    assert [d.outcome for d in days] == list(EXPECTED.values())

    drifted = " ".join(DRIFTED)
    for d in days:
        assert "\n" not in d.error, d.error                            # a stopped day's reason is one line
        if d.n == DRIFT_DAY:                                           # stopped before training, report names the feature
            assert not d.data_gate["passed"] and drifted in d.data_gate["verdict"], d.data_gate["verdict"]
            assert drifted in d.data_gate_page and "data gate" in d.error and d.gate is None and d.auc is None
            continue
        assert d.data_gate["passed"], (d.n, d.data_gate["verdict"])
        assert d.gate is not None and d.auc is not None
        if d.n == BROKEN_DAY:                                          # trained, then rejected against production
            assert not d.gate["passed"] and d.gate["verdict"].startswith("rejected"), d.gate["verdict"]
            assert d.gate["production_version"] == days[BROKEN_DAY - 2].production
            assert "rejected" in d.gate_page
        else:
            assert d.gate["passed"] and d.gate["verdict"].startswith("promoted"), d.gate["verdict"]
            assert d.data_gate["production_version"] == (days[d.n - 2].production if d.n > 1 else None)

    states = {v.number: (v.state, v.reason) for v in registry.versions(MODEL)}
    assert [s for s, _ in states.values()] == ["archived"] * 4 + ["rejected", "production"]
    assert "model gate" in states[5][1] and "tolerance" in states[5][1]
    # the daily flow, as generated, loads in Azkaban's own loader with its schedule
    loaded = azkaban_load([project])[project]
    assert loaded["errors"] == [] and loaded["flows"] == validate_project(project)
    assert "trigger:" in (project / "week.flow").read_text()
