"""The fixed-effect trainer reaches scipy's optimum, resumes exactly, and writes a usable model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from glmix.data.sparse_rows import SparseRows, load_rows
from glmix.data.synthetic import generate, generic_spec
from glmix.glm.objective import PaddedRows, ScipyObjective, TfObjective, configure_tensorflow
from glmix.glm.optim import OptimizerState
from glmix.glm.tron import tron
from glmix.io.libsvm import import_libsvm
from glmix.settings import FeatureShard
from glmix.train.fixed_effect import FixedEffectArgs, FixedEffectConfig, Trainer, read_model
from jobs.index_features import index_features
from jobs.prepare_fixed_effect import prepare_fixed_effect
from tests.fe_reference import reference_objective
from tests.photon_data import photon_model_record, write_photon_model_file


@pytest.fixture(scope="module")
def a9a_prepared(spark, a9a_path: Path, tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("a9a")
    import_libsvm(str(a9a_path), str(root / "avro"))
    index_features(spark, str(root / "avro"), str(root / "index"), FeatureShard(name="g", bags=("features",)))
    prepare_fixed_effect(spark, str(root / "avro"), str(root / "index"), str(root / "prepared"), files=2)
    return str(root / "index"), str(root / "prepared")


@pytest.fixture(scope="module", params=["logistic", "linear", "poisson"])
def synthetic_prepared(request, spark, tmp_path_factory) -> tuple[str, str, str, str]:
    task = request.param
    root = tmp_path_factory.mktemp(f"syn-{task}")
    spec = generic_spec(rows=4000, users=50, items=20, task=task, context_dimension=60, context_nnz=6, seed=11)
    generate(spec.model_copy(update={"rows_per_file": 2000}), str(root / "data"))
    shard = FeatureShard(name="g", bags=("features", "userFeatures", "itemFeatures"))
    index_features(spark, str(root / "data" / "train"), str(root / "index"), shard)
    for split in ("train", "validation"):
        prepare_fixed_effect(spark, str(root / "data" / split), str(root / "index"), str(root / split), files=3)
    return task, str(root / "index"), str(root / "train"), str(root / "validation")


def reference_for(prepared: str, num_features: int, task: str, l2: float, l1: float) -> float:
    rows = load_rows(prepared)
    mask = np.ones(num_features)
    mask[0] = 0.0  # intercept unregularized
    return reference_objective(rows.to_scipy(num_features), rows.label, rows.weight, rows.offset, task,
                               l2 * mask, l1 * mask)


@pytest.mark.parametrize("precondition", [True, False], ids=["preconditioned", "plain"])
@pytest.mark.parametrize("compute", ["tensorflow", "scipy"])
def test_a9a_logistic_matches_scipy(a9a_prepared, tmp_path: Path, compute: str, precondition: bool) -> None:
    index, prepared = a9a_prepared
    config = FixedEffectConfig(task="logistic", l2=1.0, compute=compute, validation_every=0,
                               precondition=precondition)
    report = Trainer(config, index, prepared, str(tmp_path / "model")).run().report
    expected = reference_for(prepared, report["num_features"], "logistic", 1.0, 0.0)
    assert report["converged"], report["stop_reason"]
    assert abs(report["final_objective"] - expected) / expected < 1e-6


@pytest.mark.parametrize("l2,l1", [(1.0, 0.0), (0.0, 2.0), (0.5, 1.0)], ids=["l2", "l1", "elastic-net"])
def test_synthetic_tasks_match_scipy(synthetic_prepared, tmp_path: Path, l2: float, l1: float) -> None:
    task, index, train, _ = synthetic_prepared
    config = FixedEffectConfig(task=task, l2=l2, l1=l1, validation_every=0)
    report = Trainer(config, index, train, str(tmp_path / "model")).run().report
    expected = reference_for(train, report["num_features"], task, l2, l1)
    assert report["converged"], report["stop_reason"]
    assert abs(report["final_objective"] - expected) / abs(expected) < 1e-6
    if l1 > 0:
        model = read_model(str(tmp_path / "model"))
        assert sum(1 for v in model.means.values() if v == 0.0) > 0  # L1 gives exact zeros


def test_boolean_options_turn_on_and_off_from_the_command_line() -> None:
    required = ["--index", "i", "--train", "t", "--output", "o", "--task", "logistic"]
    assert FixedEffectArgs.from_argv(required).config().precondition is True
    config = FixedEffectArgs.from_argv([*required, "--no-precondition", "--regularize-intercept"]).config()
    assert config.precondition is False and config.regularize_intercept is True


def test_outputs_scores_variances_and_report(synthetic_prepared, tmp_path: Path) -> None:
    task, index, train, validation = synthetic_prepared
    out = tmp_path / "model"
    config = FixedEffectConfig(task=task, l2=1.0, variance="full")
    report = Trainer(config, index, train, str(out), validation=validation).run().report
    assert (out / "_SUCCESS").exists() and json.loads((out / "_report.json").read_text())["converged"]
    assert report["wall_seconds"] > report["load_seconds"] + report["train_seconds"]   # bench.cost_model's worker time
    model = read_model(str(out))
    assert model.model_id == "global" and model.task == task and ("(INTERCEPT)", "") in model.means
    rows = load_rows(train)
    coefficients = np.array(list(model.means.values()))
    expected = rows.to_scipy(len(coefficients)) @ coefficients
    table = pq.read_table(str(out / "scores" / "train"))
    scores = dict(zip(table.column("uid").to_pylist(), table.column("score").to_pylist(), strict=True))
    assert np.allclose([scores[u] for u in rows.uid], expected)
    assert len(pq.read_table(str(out / "scores" / "validation"))) == len(load_rows(validation).label)
    full = np.array(list(model.variances.values()))
    simple_report = Trainer(config.model_copy(update={"variance": "simple"}), index, train,
                            str(tmp_path / "simple")).run().report
    simple = np.array(list(read_model(str(tmp_path / "simple")).variances.values()))
    assert np.all(full > 0) and np.all(simple > 0) and np.all(simple <= full * (1 + 1e-9))  # 1/H_jj <= (H^-1)_jj
    assert simple_report["iterations"] == report["iterations"]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [h["iteration"] for h in report["history"]]
    assert {"loss", "gradient_norm"} <= set(events.Tags()["scalars"])


def test_scipy_compute_in_one_process_never_imports_tensorflow(synthetic_prepared, tmp_path: Path) -> None:
    task, index, train, validation = synthetic_prepared
    script = ("import sys; from glmix.train.fixed_effect import main; "
              f"code = main(['--index', {index!r}, '--train', {train!r}, '--validation', {validation!r}, "
              f"'--output', {str(tmp_path / 'm')!r}, '--task', {task!r}, '--l2', '1', '--compute', 'scipy']); "
              "print('tensorflow imported:', 'tensorflow' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "tensorflow imported: False" in done.stdout
    assert list((tmp_path / "m" / "tensorboard").iterdir())


def test_warm_start_from_optimum_needs_few_iterations(synthetic_prepared, tmp_path: Path) -> None:
    """The optimum handed over as Photon ML writes a model (coefficients Avro with its schema's
    invalid defaults): the warm start reads it by feature name."""
    task, index, train, _ = synthetic_prepared
    config = FixedEffectConfig(task=task, l2=1.0, validation_every=0)
    first = Trainer(config, index, train, str(tmp_path / "first")).run().report
    photon = tmp_path / "photon" / "coefficients" / "part-00000.avro"
    write_photon_model_file(photon, [photon_model_record("fixed-effect", read_model(str(tmp_path / "first")).means,
                                                         None)])
    warm = Trainer(config.model_copy(update={"warm_start": str(photon.parent)}), index, train,
                   str(tmp_path / "warm")).run().report
    assert warm["iterations"] <= min(5, first["iterations"] // 5)
    assert abs(warm["final_objective"] - first["final_objective"]) < 1e-6 * abs(first["final_objective"])

    # a retraining run: the production version's model (a GAME model's layout), named by the flow's
    # pointer; a pointer without a production version (a model's first run) trains from scratch
    production = tmp_path / "production" / "fixed-effect" / "global" / "coefficients"
    production.mkdir(parents=True)
    shutil.copy(photon, production / photon.name)
    pointer = tmp_path / "production.json"
    for version, most in [(4, min(5, first["iterations"] // 5)), (None, first["iterations"])]:
        pointer.write_text(json.dumps({"version": version, "model": str(tmp_path / "production")}))
        retrained = Trainer(config.model_copy(update={"production": str(pointer), "production_warm_start": True}),
                            index, train, str(tmp_path / f"retrained-{version}")).run().report
        assert retrained["iterations"] <= most and (version or retrained["iterations"] == first["iterations"])


def test_incremental_prior_pulls_towards_previous_model(synthetic_prepared, tmp_path: Path) -> None:
    task, index, train, _ = synthetic_prepared
    base = FixedEffectConfig(task=task, l2=1.0, variance="simple", validation_every=0)
    Trainer(base, index, train, str(tmp_path / "prior")).run()
    prior = read_model(str(tmp_path / "prior"))
    strong = base.model_copy(update={"l2": 0.0, "prior": str(tmp_path / "prior"), "incremental_weight": 1e6})
    Trainer(strong, index, train, str(tmp_path / "incremental")).run()
    incremental = read_model(str(tmp_path / "incremental"))
    deltas = [abs(incremental.means[k] - prior.means[k]) for k in prior.means]
    assert max(deltas) < 1e-3


def test_killed_run_resumes_to_the_same_model(synthetic_prepared, tmp_path: Path) -> None:
    task, index, train, _ = synthetic_prepared
    # tolerances at zero: the run goes on for many iterations, so the kill lands mid-training; scipy
    # computes (checkpoints are the optimizer's, whatever computes; no TensorFlow start in each process)
    args = ["--index", index, "--train", train, "--task", task, "--l2", "0.01", "--checkpoint-every", "2", "--compute", "scipy",
            "--validation-every", "0", "--ftol", "0", "--gtol", "0", "--max-iterations", "300"]
    subprocess.run([sys.executable, "-m", "glmix.train.fixed_effect", *args, "--output", str(tmp_path / "straight")],
                   check=True, capture_output=True)
    out = tmp_path / "resumed"
    proc = subprocess.Popen([sys.executable, "-m", "glmix.train.fixed_effect", *args, "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "._checkpoints-resumed" / "state.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert checkpoint.exists() and not out.exists(), "the run should be killed mid-training, after a checkpoint"
    result = subprocess.run([sys.executable, "-m", "glmix.train.fixed_effect", *args, "--output", str(out)], check=True,
                            capture_output=True, text=True)
    report = json.loads((out / "_report.json").read_text())
    assert report["resumed_from_iteration"] >= 2, result.stdout
    straight = read_model(str(tmp_path / "straight")).means
    resumed = read_model(str(out)).means
    assert max(abs(straight[k] - resumed[k]) for k in straight) < 1e-6


def test_checkpoint_of_another_run_is_not_resumed(synthetic_prepared, tmp_path: Path) -> None:
    task, index, train, _ = synthetic_prepared
    leftover = tmp_path / "._checkpoints-model"
    leftover.mkdir()
    from glmix.glm.optim import OptimizerState

    (leftover / "state.npz").write_bytes(OptimizerState(x=np.zeros(3), f=0.0, g=np.zeros(3)).to_bytes())
    report = Trainer(FixedEffectConfig(task=task, l2=1.0, validation_every=0), index, train,
                     str(tmp_path / "model")).run().report
    assert report["resumed_from_iteration"] is None and report["converged"]


def random_rows(lengths: list[int], num_features: int, seed: int = 0) -> SparseRows:
    """Rows of the given lengths, each with distinct columns (as prepared rows are)."""
    rng = np.random.default_rng(seed)
    n, nnz = len(lengths), int(sum(lengths))
    return SparseRows(uid=np.array([str(i) for i in range(n)], dtype=object), label=rng.integers(0, 2, n) * 1.0,
                      weight=rng.uniform(0.5, 2.0, n), offset=rng.normal(size=n),
                      indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                      indices=np.concatenate([rng.choice(num_features, k, replace=False) for k in lengths] or [[]]).astype(np.int32),
                      values=rng.normal(size=nnz))


@pytest.mark.parametrize("lengths", [[5] * 40, [3, 0, 4, 5, 0, 2] * 10, [2] * 60 + [25], [0, 0, 0], []],
                         ids=["uniform", "with-empty-rows", "one-long-row", "all-empty", "no-rows"])
@pytest.mark.parametrize("task", ["logistic", "linear", "poisson"])
@pytest.mark.parametrize("block_entries", [PaddedRows.BLOCK_ENTRIES, 16], ids=["one-block", "blocks-of-16"])
def test_padded_tensorflow_products_equal_scipy_csr(lengths: list[int], task: str, block_entries: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PaddedRows, "BLOCK_ENTRIES", block_entries)
    rows = random_rows(lengths, num_features=30)
    padded, exact = TfObjective(rows, 30, task), ScipyObjective(rows, 30, task)
    b = np.random.default_rng(1).normal(size=30) * 0.3
    (f, g), (f_ref, g_ref) = padded.value_and_gradient(b), exact.value_and_gradient(b)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(padded.hessian_diagonal(b), exact.hessian_diagonal(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(padded.scores(b), exact.scores(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(padded.hessian(b), exact.hessian(b), rtol=1e-12, atol=1e-12)


def test_padded_rows_chunk_long_rows_instead_of_padding_every_row_to_them() -> None:
    uniform = PaddedRows(random_rows([7] * 10 + [8], 20).indptr)
    assert (uniform.width, uniform.chunks, uniform.owner) == (8, 11, None)  # padding 1.4%: one chunk per row
    skewed = PaddedRows(random_rows([2] * 60 + [150], 200).indptr)
    assert skewed.width < 150 and skewed.owner is not None
    assert skewed.chunks * skewed.width < 2 * (120 + 150)
    np.testing.assert_array_equal(np.bincount(skewed.owner)[:60], 1)


def test_tensorflow_settings_are_defaults_a_user_setting_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    configure_tensorflow()
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "3"  # one CPU left to the solver's thread
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"   # the user's value stays
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    configure_tensorflow()
    assert os.environ["TF_NUM_INTRAOP_THREADS"] == "1"


def linear_log_evidence(rows: SparseRows, num_features: int, log_params: np.ndarray) -> float:
    """log N(y; o, s2 I + X P X') with P = diag(flat, v, ..., v) for (log v, log s2): the exact
    evidence of a linear fixed effect whose slopes have prior variance v (the intercept's, 1e8,
    stands for a flat prior), by the determinant lemma and Woodbury's identity."""
    slope_var, noise_var = np.exp(log_params)
    x = rows.to_scipy(num_features).toarray()
    r = rows.label - rows.offset
    prior = np.full(num_features, slope_var)
    prior[0] = 1e8
    inner = np.diag(1 / prior) + x.T @ x / noise_var
    projected = x.T @ r / noise_var
    n = len(r)
    log_det = n * np.log(noise_var) + np.sum(np.log(prior)) + np.linalg.slogdet(inner)[1]
    quadratic = r @ r / noise_var - projected @ np.linalg.solve(inner, projected)
    return float(-0.5 * (n * np.log(2 * np.pi) + log_det + quadratic))


def test_l2_auto_learns_the_weight_the_evidence_favours(synthetic_prepared, tmp_path: Path) -> None:
    """Linear: the exact evidence's maximum (slope variance and noise variance, maximized by scipy).
    Every task: the model is the one a fixed l2 of the learned value gives. The solves run to tight
    tolerances: each update reads the optimum and its curvature, so at the default gtol the learned
    variance is only as exact as the solve (at the default tolerances it missed the maximum by 1.1e-4
    on 2026-12-04 after passing for weeks; the solve stops at a different point on another machine)."""
    from scipy.optimize import minimize as scipy_minimize

    task, index, train, _ = synthetic_prepared
    config = FixedEffectConfig(task=task, l2="auto", compute="scipy", validation_every=0, prior_tolerance=1e-6,
                               gtol=1e-10, ftol=1e-15)
    report = Trainer(config, index, train, str(tmp_path / "auto")).run().report
    learned = report["learned_prior"]
    assert learned["converged"], learned
    fixed = Trainer(config.model_copy(update={"l2": learned["l2"]["slopes"]}), index, train,
                    str(tmp_path / "fixed")).run().report
    assert report["final_objective"] == pytest.approx(fixed["final_objective"], rel=1e-7)
    if task == "linear":
        rows = load_rows(train)
        ours = np.log([learned["variances"]["slopes"] * learned["dispersion"], learned["dispersion"]])
        best = scipy_minimize(lambda t: -linear_log_evidence(rows, report["num_features"], t), ours + 0.1,
                              method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10})
        print(f"learned {np.exp(ours)}, the exact evidence's maximum {np.exp(best.x)}")
        np.testing.assert_allclose(ours, best.x, atol=1e-5)


def test_tron_reaches_the_optimum_on_a9a(a9a_prepared, tmp_path: Path) -> None:
    """With scipy's products (TensorFlow's Hessian-vector products: the distributed test)."""
    index, prepared = a9a_prepared
    config = FixedEffectConfig(task="logistic", l2=1.0, compute="scipy", validation_every=0, solver="tron")
    report = Trainer(config, index, prepared, str(tmp_path / "model")).run().report
    expected = reference_for(prepared, report["num_features"], "logistic", 1.0, 0.0)
    assert report["converged"] and report["iterations"] < 30, (report["stop_reason"], report["iterations"])
    assert abs(report["final_objective"] - expected) / expected < 1e-6


def test_tron_matches_scipy_on_every_task_and_refuses_l1(synthetic_prepared, tmp_path: Path) -> None:
    task, index, train, _ = synthetic_prepared
    config = FixedEffectConfig(task=task, l2=0.5, validation_every=0, solver="tron", compute="scipy")
    report = Trainer(config, index, train, str(tmp_path / "model")).run().report
    expected = reference_for(train, report["num_features"], task, 0.5, 0.0)
    assert report["converged"] and abs(report["final_objective"] - expected) / abs(expected) < 1e-6
    with pytest.raises(ValueError, match="solver tron needs a smooth objective"):
        FixedEffectConfig(task=task, l1=0.1, solver="tron")


def test_tron_resumes_exactly_from_a_saved_state() -> None:
    """A run stopped after its second step and resumed from the saved state ends where an
    uninterrupted run ends (the trust region is part of the state)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 12)), rng.random(400) < 0.4

    def fun(b: np.ndarray) -> tuple[float, np.ndarray]:
        m = x @ b
        return float(np.sum(np.logaddexp(0, m) - y * m) + 0.05 * b @ b), x.T @ (1 / (1 + np.exp(-m)) - y) + 0.1 * b

    def hessian_times(b: np.ndarray, v: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-(x @ b)))
        return x.T @ (p * (1 - p) * (x @ v)) + 0.1 * v

    straight = tron(fun, hessian_times, np.zeros(12), gtol=1e-9)
    saved: list[bytes] = []

    class Killed(Exception):
        pass

    def kill_after_two(state: OptimizerState) -> None:
        if state.iteration == 2:
            saved.append(state.to_bytes())
            raise Killed

    with pytest.raises(Killed):
        tron(fun, hessian_times, np.zeros(12), gtol=1e-9, callback=kill_after_two)
    resumed = tron(fun, hessian_times, np.zeros(12), gtol=1e-9, state=OptimizerState.from_bytes(saved[0]))
    assert straight.converged and straight.iterations > 3 and resumed.iterations == straight.iterations
    np.testing.assert_array_equal(resumed.x, straight.x)
