"""Indexed sparse rows in memory (CSR), loaded from prepared Parquet for one worker's share.

Workers split *rows*, not files: worker w of W takes global rows [w*R/W, (w+1)*R/W) in file order,
using each file's row count from its Parquet footer, so any number of files serves any number of
workers. A Parquet list column already is CSR (offsets + flat values), so loading is a handful of
vectorized pyarrow calls.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glmix.errors import DataError

if TYPE_CHECKING:
    import scipy.sparse
from glmix.io.storage import storage_for

COLUMNS = ["uid", "label", "weight", "offset", "indices", "values"]
FOOTER_GUESS = 1 << 16  # bytes read from a file's end to find its Parquet footer (re-read if longer)
PARQUET_MAGIC = b"PAR1"


@dataclass
class SparseRows:
    uid: np.ndarray        # object (str)
    label: np.ndarray      # float64
    weight: np.ndarray     # float64
    offset: np.ndarray     # float64
    indptr: np.ndarray     # int64, len rows + 1
    indices: np.ndarray    # int32 column of each non-zero
    values: np.ndarray     # float64

    @property
    def rows(self) -> int:
        return len(self.label)

    @property
    def nnz(self) -> int:
        return len(self.values)

    @property
    def nbytes(self) -> int:
        """Memory of the numeric arrays (the 'in-memory size of the data')."""
        return sum(a.nbytes for a in (self.label, self.weight, self.offset, self.indptr, self.indices, self.values))

    def release_features(self) -> None:
        """Empty the non-zeros (every row then has none), once another structure holds a copy of them."""
        self.indptr = np.zeros(self.rows + 1, dtype=np.int64)
        self.indices, self.values = np.zeros(0, dtype=np.int32), np.zeros(0)

    def row_ids(self) -> np.ndarray:
        return np.repeat(np.arange(self.rows, dtype=np.int32), np.diff(self.indptr))

    def to_scipy(self, num_features: int) -> scipy.sparse.csr_matrix:
        import scipy.sparse as sp

        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(self.rows, num_features))

    @classmethod
    def concatenate(cls, pieces: list[SparseRows]) -> SparseRows:
        """One set of rows from several, in order. The pieces are consumed: each field of theirs is
        dropped as soon as it is joined, so the peak is the pieces plus one joined field, not twice
        the rows."""
        if len(pieces) == 1:
            return pieces[0]
        indptr = [np.zeros(1, dtype=np.int64)]
        for piece in pieces:
            indptr.append(piece.indptr[1:] + indptr[-1][-1])
        joined = {}
        for name in ("values", "indices", "uid", "label", "weight", "offset"):
            joined[name] = np.concatenate([getattr(piece, name) for piece in pieces])
            for piece in pieces:
                setattr(piece, name, None)
        pa.default_memory_pool().release_unused()  # what pyarrow's allocator kept of the freed files
        return cls(indptr=np.concatenate(indptr), **joined)

    @classmethod
    def from_table(cls, table: pa.Table) -> SparseRows:
        indices = table.column("indices").combine_chunks()
        values = table.column("values").combine_chunks()
        if len(table) == 0:
            indptr = np.zeros(1, dtype=np.int64)
            flat_indices, flat_values = np.zeros(0, np.int32), np.zeros(0)
        else:
            indptr = indices.offsets.to_numpy().astype(np.int64)
            indptr = indptr - indptr[0]
            flat_indices = indices.flatten().to_numpy().astype(np.int32, copy=False)
            flat_values = values.flatten().to_numpy().astype(np.float64, copy=False)
        return cls(uid=table.column("uid").to_numpy(zero_copy_only=False),
                   label=table.column("label").to_numpy().astype(np.float64, copy=False),
                   weight=table.column("weight").to_numpy().astype(np.float64, copy=False),
                   offset=table.column("offset").to_numpy().astype(np.float64, copy=False),
                   indptr=indptr, indices=flat_indices, values=flat_values)


def _part_files(uri: str) -> list[str]:
    return sorted(storage_for(uri).data_files(uri, suffix=".parquet"))


def worker_slice(total: int, worker: int, workers: int) -> tuple[int, int]:
    return total * worker // workers, total * (worker + 1) // workers


def _row_count(uri: str) -> int:
    """Rows of one Parquet file from its footer alone (the file's last bytes)."""
    storage = storage_for(uri)
    tail = storage.read_tail(uri, FOOTER_GUESS)
    if len(tail) < 12 or tail[-4:] != PARQUET_MAGIC:
        raise DataError("not a Parquet file (no footer)", path=uri)
    footer = struct.unpack("<i", tail[-8:-4])[0] + 8
    if footer > len(tail):
        tail = storage.read_tail(uri, footer)
    return pq.read_metadata(io.BytesIO(tail[-footer:])).num_rows


def total_rows(uri: str) -> int:
    """Rows in all part files, from the Parquet footers alone."""
    return sum(_row_count(path) for path in _part_files(uri))


def load_rows(uri: str, worker: int = 0, workers: int = 1) -> SparseRows:
    """This worker's share of the prepared rows under ``uri``.

    Files are read one at a time and only those holding this worker's rows; each becomes numpy
    arrays before the next is read, so the peak is about the rows themselves plus one file.
    """
    storage = storage_for(uri)
    files = _part_files(uri)
    counts = [_row_count(path) for path in files]
    start, end = worker_slice(sum(counts), worker, workers)
    pieces, position = [], 0
    for path, count in zip(files, counts, strict=True):
        lo, hi = max(start, position), min(end, position + count)
        if lo < hi:
            table = pq.read_table(io.BytesIO(storage.read_bytes(path)), columns=COLUMNS)
            pieces.append(SparseRows.from_table(table.slice(lo - position, hi - lo)))
            del table
        position += count
    if not pieces:
        schema = pa.schema([("uid", pa.string()), ("label", pa.float64()), ("weight", pa.float64()),
                            ("offset", pa.float64()), ("indices", pa.list_(pa.int32())),
                            ("values", pa.list_(pa.float64()))])
        return SparseRows.from_table(schema.empty_table())
    return SparseRows.concatenate(pieces)
