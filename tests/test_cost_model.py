"""The whole-flow cost model (bench/cost_model.py) on measurements made up to follow a known law,
so its fit, its check and its extrapolation can be compared with arithmetic done by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cost_model import (
    FIXED,
    SPARK_KINDS,
    Cluster,
    check,
    extrapolate,
    fastest,
    fixed_effect_memory_gb,
    linear_fit,
    main,
)


def run(rows: int, evaluations: int = 50) -> dict[str, Any]:
    """Every Spark stage: 5 s + 2 us a row, 4 core-us and 100 shuffled bytes a row; the fixed effect a
    pass: 2.5 s of the launcher's, a worker's 0.5 s of overhead, loading (1 us a row) and 50 evaluations
    (30 nnz a row, 1 ns a nnz)."""
    stages: dict[str, dict[str, float]] = {k: {"nodes": 1, "seconds": 5 + 2e-6 * rows, "core_seconds": 4e-6 * rows,
                                               "shuffle_bytes": 100.0 * rows} for k in SPARK_KINDS}
    reports = [{"load_seconds": 1e-6 * rows, "train_seconds": evaluations * 30 * rows * 1e-9, "evaluations": evaluations,
                "nnz_this_worker": 30 * rows, "peak_rss_mb_this_worker": 200 + 1e-4 * rows} for _ in range(2)]
    for report in reports:
        report["wall_seconds"] = 0.5 + report["load_seconds"] + report["train_seconds"]
    stages[FIXED] = {"nodes": 2, "seconds": sum(2.5 + r["wall_seconds"] for r in reports)}
    return {"master": "local[2]", "rows": rows, "stages": stages, "fixed_effect": reports}


RUNS = [run(n) for n in (100_000, 1_000_000, 10_000_000)]


def test_a_line_through_two_points_and_its_floor_at_zero_overhead() -> None:
    assert linear_fit((1, 7.0), (3, 11.0)) == (5.0, 2.0)
    assert linear_fit((1, 1.0), (3, 9.0)) == (0.0, 3.0)     # would cross below zero: overhead 0, through the larger


def test_the_check_predicts_the_largest_run_exactly_when_the_law_is_linear() -> None:
    table = check(RUNS)
    assert [row[0] for row in table] == [*SPARK_KINDS, FIXED, "all of these"]
    for row in table:
        assert row[-1] == pytest.approx(0.0, abs=1e-9)   # predicted == measured
    index = table[0]
    assert index[1] == pytest.approx(5.0)        # the driver's s: 5 + 2 us a row, less 4 core-us a row over 2 cores
    assert index[2] == pytest.approx(0.0) and index[3] == pytest.approx(4.0)   # task overhead, core-s per 1M rows


def test_the_check_takes_the_driver_s_time_from_the_middle_run_not_from_a_line_through_wall_times() -> None:
    """The smallest run's cores idled 10 s beyond its task time (few, short tasks): a line through the
    wall times would read it as less work per row; task time and the middle run's driver do not."""
    small = run(100_000)
    for stage in SPARK_KINDS:
        small["stages"][stage]["seconds"] += 10.0
    for row in check([small, run(1_000_000), run(10_000_000)])[:len(SPARK_KINDS)]:
        assert row[-1] == pytest.approx(0.0, abs=1e-9)


def test_of_repeated_runs_at_a_size_each_stage_s_fastest_counts() -> None:
    slow = run(1_000_000)
    slow["stages"]["index"]["seconds"] += 30.0
    slow["stages"][FIXED]["seconds"] += 30.0
    slow["fixed_effect"][0]["load_seconds"] += 30.0
    fast = run(1_000_000)
    fast["stages"]["prepare"]["seconds"] += 20.0
    merged = fastest([run(100_000), slow, fast, run(10_000_000)])
    assert [r["rows"] for r in merged] == [100_000, 1_000_000, 10_000_000]
    assert [r["repeats"] for r in merged] == [1, 2, 1]
    middle = merged[1]
    assert middle["stages"]["index"] == fast["stages"]["index"]
    assert middle["stages"]["prepare"] == slow["stages"]["prepare"]
    assert middle["fixed_effect"] == fast["fixed_effect"]        # with its stage's own time, not the slow run's
    for row in check([run(100_000), slow, fast, run(10_000_000)]):
        assert row[-1] == pytest.approx(0.0, abs=1e-9)


def test_the_check_predicts_the_fixed_effect_s_solve_from_its_rate_not_from_a_line() -> None:
    """A small run's solve may take many more evaluations (174 at 100k rows against 22 at 1M, measured):
    a line through the two smaller runs' stage times would read them as overhead; the solve's rate per
    evaluation and non-zero does not."""
    table = {row[0]: row for row in check([run(100_000, evaluations=500), run(1_000_000), run(10_000_000)])}
    assert table[FIXED][-1] == pytest.approx(0.0, abs=1e-9)
    assert table[FIXED][1] == pytest.approx(6.0)                  # the launcher's 2.5 s and a worker's 0.5 s a pass, both passes


def test_the_launcher_s_time_around_the_fixed_effect_s_workers_is_the_larger_run_s_not_a_line() -> None:
    """On YARN the launcher's time a pass moved by +-3 s from run to run, more than loading grows from
    100k to 1M rows: a line through the stage's time would read it as no work per row."""
    small = run(100_000)
    small["stages"][FIXED]["seconds"] += 5.0
    table = {row[0]: row for row in check([small, run(1_000_000), run(10_000_000)])}
    assert table[FIXED][-1] == pytest.approx(0.0, abs=1e-9)
    old = [run(n) for n in (100_000, 1_000_000, 10_000_000)]       # saved before workers' wall time was
    for measured in old:
        for report in measured["fixed_effect"]:
            del report["wall_seconds"]
    assert {row[0]: row for row in check(old)}[FIXED][-1] == pytest.approx(0.0, abs=1e-9)


def test_extrapolation_spreads_work_over_the_cluster_and_adds_the_network() -> None:
    cluster = Cluster(nodes=100, cores_per_node=16, network_gb_per_s=1.25, features=100_000)
    rows = 10_000_000_000
    table = {row[0]: row for row in extrapolate(RUNS, rows, cluster)}
    name, overhead, compute, network, total = table["index"]
    assert overhead == pytest.approx(5.0)
    assert compute == pytest.approx(4e-6 * rows / 1600)
    assert network == pytest.approx(100 * rows / (100 * 1.25e9))
    assert total == pytest.approx(overhead + compute + network)
    fixed = table[FIXED]
    per_worker = rows / 100
    load, solve = 2 * 1e-6 * per_worker, 2 * 50 * 30 * per_worker * 1e-9
    assert fixed[1] == pytest.approx(6.0) and fixed[2] == pytest.approx(load + solve)
    assert fixed[3] == pytest.approx(100 * 2 * 8 * 100_000 / 1.25e9)
    assert fixed_effect_memory_gb(RUNS, rows, cluster) == pytest.approx((200 + 1e-4 * per_worker) / 1024)


def test_the_model_prints_from_saved_measurements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "flow.json"
    saved.write_text(json.dumps(RUNS))
    assert main([str(saved)]) == 0
    out = capsys.readouterr().out
    assert "cost model check on local[2]" in out and "extrapolated: 10,000,000,000 rows on 100 nodes" in out
