"""The embedded demo's stages, on a small MovieLens-shaped dataset (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

from glmix.cli import main
from glmix.demo import fixed_effect_validation_auc, true_margins
from glmix.metrics import auc


def test_demo_runs_the_stages_and_beats_chance(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--output", str(tmp_path), "--rows", "8000"]) == 0
    printed = capsys.readouterr().out
    assert "train fixed effect" in printed and "validation AUC" in printed
    fixed = fixed_effect_validation_auc(str(tmp_path))
    labels, margins = true_margins(str(tmp_path / "data"))
    truth = auc(labels, margins)
    assert 0.55 < fixed < truth  # the global GLM learns something; the true GLMix model knows more
