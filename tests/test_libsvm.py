"""LIBSVM import, on the public a9a file and on bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from glmix.errors import DataError
from glmix.io.examples import ExampleReader
from glmix.io.libsvm import import_libsvm
from glmix.io.storage import is_published


def test_a9a_import(a9a_path: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "a9a")
    assert import_libsvm(str(a9a_path), out) == 32561
    assert is_published(out)
    examples = list(ExampleReader().read(out))
    assert len(examples) == 32561
    assert {e.label for e in examples} == {0.0, 1.0}
    first_line = a9a_path.read_text().splitlines()[0].split()
    assert examples[0].label == (1.0 if first_line[0] == "+1" else 0.0)
    assert examples[0].bags["features"] == [(t.split(":")[0], "", float(t.split(":")[1])) for t in first_line[1:]]
    assert examples[0].uid == "a9a-1"


@pytest.mark.parametrize("line,message", [
    ("+1 3:1 x:2\n", r"line 2: feature 'x:2' is not index:value"),
    ("2 3:1\n", r"line 2: label '2' is not -1, 0 or \+1"),
    ("+1 3:nan\n", r"line 2: feature '3:nan' is not index:value"),
])
def test_bad_lines_fail_and_publish_nothing(tmp_path: Path, line: str, message: str) -> None:
    src = tmp_path / "bad.libsvm"
    src.write_text("-1 1:1 2:0.5\n" + line)
    with pytest.raises(DataError, match=message):
        import_libsvm(str(src), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
