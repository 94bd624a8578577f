"""The model registry on storage (issue 22, item 1): numbered immutable versions, states, the
production alias, concurrent publishers, and the `glmix models` tables. Versions here hold small
stand-in model directories; tests/test_demo.py registers a model a real flow chose."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from glmix.cli import main
from glmix.io.storage import join, publish_atomically, storage_for
from glmix.registry import ModelRegistry, RegistryError

FEATURES = {"global": [("(INTERCEPT)", ""), ("age", "young"), ("genre", "drama")]}


def model_dir(root: str, name: str) -> str:
    uri = join(root, "flows", name, "best")
    with publish_atomically(uri) as tmp:
        storage_for(tmp).write_bytes(join(tmp, "model-metadata.json"), b'{"task": "logistic"}')
    return uri


def metadata(auc: float, l2: float = 1.0) -> dict[str, object]:
    return {"name": "ctr", "task": "logistic", "primary_metric": "AUC", "metrics": {"AUC": auc},
            "config": {"coordinates": {"global": {"l2": l2}}}, "config_digest": f"d{l2}",
            "rows": {"train_used": 1000}, "inputs": {"train": "/data/train", "validation": "/data/validation"},
            "shards": {"global": {"features": 3, "digest": "abc"}}}


def test_concurrent_publishers_never_share_a_version(storage_root: str) -> None:
    registry = ModelRegistry(join(storage_root, "registry"))
    source = model_dir(storage_root, "day")
    got: list[int] = []

    def publish() -> None:
        got.append(registry.register_model_dir("ctr", source, metadata(0.7), FEATURES).number)

    threads = [threading.Thread(target=publish) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == [1, 2, 3, 4, 5]
    versions = registry.versions("ctr")
    assert [v.number for v in versions] == [1, 2, 3, 4, 5]
    assert all(v.state == "candidate" and v.metadata["version"] == v.number for v in versions)
    assert registry.features(versions[0]) == FEATURES


def test_concurrent_publishing_processes_never_share_a_version(tmp_path: Path) -> None:
    source = model_dir(str(tmp_path), "day")
    script = ("import sys; from glmix.registry import ModelRegistry; "
              "v = ModelRegistry(sys.argv[1]).register_model_dir('ctr', sys.argv[2], {'metrics': {}}, {}); "
              "print(v.number)")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "registry"), source],
                                  stdout=subprocess.PIPE, text=True) for _ in range(4)]
    numbers = sorted(int(p.communicate()[0]) for p in processes)
    assert numbers == [1, 2, 3, 4]


def test_promote_rollback_archive_and_their_refusals(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    source = model_dir(str(tmp_path), "day")
    for auc in (0.70, 0.72, 0.69):
        registry.register_model_dir("ctr", source, metadata(auc), FEATURES)
    with pytest.raises(RegistryError, match="ctr: no production version"):
        registry.version("ctr")
    registry.promote("ctr", 1)
    registry.promote("ctr", 2)
    states = {v.number: (v.state, v.reason) for v in registry.versions("ctr")}
    assert states == {1: ("archived", "replaced in production by version 2"), 2: ("production", "promoted"),
                      3: ("candidate", "registered")}
    assert registry.rollback("ctr", "AUC dropped online").number == 1
    states = {v.number: (v.state, v.reason) for v in registry.versions("ctr")}
    assert states[1][0] == "production" and states[2] == ("rejected", "AUC dropped online")
    with pytest.raises(RegistryError, match="ctr version 2 is rejected \\(AUC dropped online\\); only a candidate"):
        registry.promote("ctr", 2)
    with pytest.raises(RegistryError, match="version 1 is production"):
        registry.set_state("ctr", 1, "archived", "no")
    registry.set_state("ctr", 3, "archived", "superseded")
    assert registry.version("ctr", 3).state == "archived"
    with pytest.raises(RegistryError, match="ctr: no version 9 in "):
        registry.version("ctr", 9)
    with pytest.raises(RegistryError, match="not a published model"):
        registry.register_model_dir("ctr", str(tmp_path / "nothing"), metadata(0.7), FEATURES)
    with pytest.raises(RegistryError, match="model name '../x'"):
        registry.versions("../x")


def test_an_unpublished_version_directory_is_never_listed(tmp_path: Path) -> None:
    """A publisher that died after claiming a number leaves a claim and maybe a temporary directory."""
    registry = ModelRegistry(str(tmp_path / "registry"))
    storage = storage_for(str(tmp_path))
    storage.create_new(str(tmp_path / "registry" / "ctr" / "claims" / "000001"), b"")
    storage.makedirs(str(tmp_path / "registry" / "ctr" / "versions" / "000001"))   # no _SUCCESS
    assert registry.register_model_dir("ctr", model_dir(str(tmp_path), "d"), metadata(0.7), FEATURES).number == 2
    assert [v.number for v in registry.versions("ctr")] == [2]


def test_models_commands_print_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "registry")
    registry = ModelRegistry(root)
    source = model_dir(str(tmp_path), "day")
    registry.register_model_dir("ctr", source, metadata(0.70), FEATURES)
    registry.register_model_dir("ctr", source, metadata(0.72, l2=3.0),
                                {"global": [*FEATURES["global"][:2], ("genre", "comedy")]}, parent=1)
    assert main(["models", "promote", "--registry", root, "ctr", "2"]) == 0
    assert main(["models", "list", "--registry", root]) == 0
    assert main(["models", "list", "--registry", root, "ctr"]) == 0
    assert main(["models", "show", "--registry", root, "ctr"]) == 0
    assert main(["models", "diff", "--registry", root, "ctr", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "ctr: production is version 2" in out
    assert "│ ctr   │ 2        │ 2          │ 2      │" in out
    assert re.search(r"│ +2 │ production │ [0-9: -]+ │ 0.7200 │ 1,000 │ +1 │ promoted", out), out
    assert re.search(r"│ +1 │ candidate  │ [0-9: -]+ │ 0.7000 │", out)
    assert "coordinates.global.l2" in out and re.search(r"│ config +│ 1.0 +│ 3.0 +│", out)
    assert "1 removed: genre:drama" in out and "1 added: genre:comedy" in out
    assert main(["models", "promote", "--registry", root, "ctr", "7"]) == 1
    assert "error: ctr: no version 7 in" in capsys.readouterr().out
