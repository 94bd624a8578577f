"""1, 2 and 3 workers (launcher local backend, TensorFlow's collective all-reduce) give the same model,
with L-BFGS / OWL-QN and with TRON (whose Hessian-vector products are all-reduced in lock-step). They
compute with scipy: what is tested is the split of the rows and the all-reduce (tests/test_fixed_effect.py
checks the TensorFlow computation against scipy)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from glmix.data.synthetic import generate, generic_spec
from glmix.settings import FeatureShard
from glmix.train.fixed_effect import read_model
from jobs.index_features import index_features
from jobs.prepare_fixed_effect import prepare_fixed_effect
from launcher.local import LocalBackend
from launcher.spec import JobSpec


def test_one_two_three_workers_agree(spark, tmp_path: Path) -> None:
    spec = generic_spec(rows=6000, users=40, items=20, context_dimension=80, context_nnz=8, seed=21)
    generate(spec.model_copy(update={"rows_per_file": 6000, "validation_fraction": 0.0}), str(tmp_path / "data"))
    index_features(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"),
                   FeatureShard(name="g", bags=("features",)))  # Gaussian features: well conditioned
    # two files for three workers: workers split rows, not files
    prepare_fixed_effect(spark, str(tmp_path / "data" / "train"), str(tmp_path / "index"), str(tmp_path / "fe"), 2)
    # two workers: the other tests' usual case (the launcher's, the YARN fixed effect's); three: an uneven split
    for solver, penalties, counts in (("lbfgs", "--l2 0.5 --l1 0.05", (1, 3)), ("tron", "--l2 0.5", (1, 2))):
        models = {}
        for workers in counts:
            out = tmp_path / f"model-{solver}-{workers}"
            command = (f"{sys.executable} -m glmix.train.fixed_effect --index {tmp_path / 'index'} "
                       f"--train {tmp_path / 'fe'} --output {out} --task logistic {penalties} --solver {solver} "
                       "--validation-every 0 --ftol 0 --gtol 1e-9 --compute scipy")  # the split and the all-reduce
            job = JobSpec.from_dict({"name": f"fe-{solver}-{workers}", "tasks": {"worker": {
                "instances": workers, "command": command}}})
            result = LocalBackend(tmp_path / "runs").submit(job)
            assert result.final_status == "SUCCEEDED", result.failed
            models[workers] = read_model(str(out)).means
        keys = list(models[1])
        reference = np.array([models[1][k] for k in keys])
        for workers in counts[1:]:
            other = np.array([models[workers][k] for k in keys])
            assert np.max(np.abs(other - reference)) < 1e-6, (solver, workers)
