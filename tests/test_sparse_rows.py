"""Loading prepared rows: any number of workers over any number of files, rows split exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glmix.data.sparse_rows import SparseRows, load_rows, total_rows
from glmix.errors import DataError


def write_part(path: Path, first_uid: int, rows: int) -> None:
    uids = range(first_uid, first_uid + rows)
    pq.write_table(pa.table({
        "uid": [str(u) for u in uids], "label": [float(u % 2) for u in uids], "weight": [1.0] * rows,
        "offset": [0.5 * u for u in uids], "indices": [list(range(u % 4 + 1)) for u in uids],
        "values": [[float(u)] * (u % 4 + 1) for u in uids]}), str(path))


def test_workers_split_rows_not_files(tmp_path: Path) -> None:
    write_part(tmp_path / "part-00000.parquet", 0, 7)
    write_part(tmp_path / "part-00001.parquet", 7, 4)
    whole = load_rows(str(tmp_path))
    assert total_rows(str(tmp_path)) == whole.rows == 11
    assert whole.uid.tolist() == [str(u) for u in range(11)]
    shares = [load_rows(str(tmp_path), worker, 3) for worker in range(3)]
    assert [s.rows for s in shares] == [3, 4, 4]  # worker 1 spans both files
    joined = SparseRows.concatenate(shares)
    for name in ("uid", "label", "offset", "indptr", "indices", "values"):
        assert np.array_equal(getattr(joined, name), getattr(whole, name)), name
    assert whole.to_scipy(4)[5].toarray().tolist() == [[5.0, 5.0, 0.0, 0.0]]


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    write_part(tmp_path / "part-00000.parquet", 0, 3)
    (tmp_path / "part-00001.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="part-00001.parquet: not a Parquet file"):
        load_rows(str(tmp_path))
