"""One worker's share of a GLM objective: weighted loss, gradient and curvature over its rows.

    sum_i w_i loss(y_i, x_i.b + offset_i)          (see glmix.glm.losses)

The fixed-effect trainer sums these across workers and adds the penalties. Two engines compute the
same numbers: TensorFlow (the default, GDMix's design) and scipy.sparse (`compute: scipy`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from glmix.data.sparse_rows import SparseRows
from glmix.glm.losses import Loss
from glmix.settings import Task


class Objective(Protocol):
    """What the fixed-effect trainer asks of an engine holding a worker's rows (sums over them,
    the penalties left out; ``b`` has ``num_features`` entries)."""

    num_features: int

    def compile(self) -> float:
        """Prepares the solver's functions; returns the seconds it took."""
        ...

    def value_and_gradient(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The loss (a 1-element array, ready for the all-reduce) and its gradient."""
        ...

    def hessian_diagonal(self, b: np.ndarray) -> np.ndarray: ...

    def hessian_times(self, b: np.ndarray, v: np.ndarray) -> np.ndarray:
        """H(b) v, one pass over the rows (TRON's conjugate gradients)."""
        ...

    def hessian(self, b: np.ndarray) -> np.ndarray:
        """The dense Hessian (small dimensions only)."""
        ...

    def scores(self, b: np.ndarray) -> np.ndarray:
        """x.b of every row (offsets not added)."""
        ...


ALIGNMENT = 64  # bytes; what TensorFlow's CPU kernels expect of a tensor's buffer


def aligned_zeros(shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """A zeroed array whose buffer TensorFlow can read through DLPack (see _adopt)."""
    item = np.dtype(dtype)
    size = int(np.prod(shape)) * item.itemsize
    buffer = np.zeros(size + ALIGNMENT, dtype=np.uint8)
    start = (-buffer.ctypes.data) % ALIGNMENT
    return buffer[start:start + size].view(item).reshape(shape)


def _adopt(array: np.ndarray) -> Any:
    """A TensorFlow-owned tensor holding ``array``'s data, made with one copy.

    tf.constant keeps two copies of a large array (measured: 400 MB for 200 MB); a DLPack view of an
    aligned buffer copied once by DeepCopy holds one. The view itself is not used for compute: XLA
    kernels on such views were measured 40% slower.
    """
    import tensorflow as tf

    if array.nbytes < 1 << 20:
        return tf.constant(array)
    if array.ctypes.data % ALIGNMENT or not array.flags.writeable:  # DLPack exports writeable arrays only
        aligned = aligned_zeros(array.shape, array.dtype)
        aligned[...] = array
        array = aligned
    return tf.raw_ops.DeepCopy(x=tf.experimental.dlpack.from_dlpack(array.__dlpack__()))


def configure_tensorflow() -> None:
    """Settings for TensorFlow's runtime, read when it starts (so called before): environment
    defaults, which a user's own settings override. Kept out of the import itself, which before the
    rows are loaded would add TensorFlow's memory to the loading's peak.

    - TF_NUM_INTRAOP_THREADS: one CPU fewer than this process may use (at least one). The solver's
      Python thread works between TensorFlow calls; with a compute thread on every CPU the idle
      ones spin-wait on the CPU it needs (measured on 2 CPUs: a9a fit 0.90 -> 0.64 s, 24.8M
      non-zeros no slower).
    - TF_ENABLE_ONEDNN_OPTS=0: the compiled functions use no oneDNN kernels, and oneDNN's CPU
      allocator keeps what is freed: dropping the rows' tensors before the outputs are written
      returned nothing to the system with it, 290 MB (of 308 MB of rows) without it.
    """
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, len(os.sched_getaffinity(0)) - 1)))
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


class PaddedRows:
    """The layout of a worker's rows as fixed-width chunks ("ELLPACK"), which XLA turns into tight loops.

    Every row's non-zeros are cut into chunks of ``width`` entries (zero-padded): ``pad`` turns a
    CSR array (the indices, the values) into a [chunks, width] one. When ``width`` covers the longest
    row there is one chunk per row and ``owner`` is None; otherwise ``owner`` names each chunk's row.
    The width is the longest row when that pads by at most a quarter, else the power of two with the
    least padding plus chunk bookkeeping, so a few long rows do not blow up the matrix. 12 bytes per
    stored entry (int32 index, float64 value) against 24 for a SparseTensor's int64 COO indices. The
    chunks come in ``blocks`` of ``block`` (the last one padded with empty chunks), so that X^T r can
    be summed block by block.
    """

    MAX_PADDING = 1.25
    # X^T r runs over blocks of this many entries: its temporary is one block (16 MB), not the whole
    # matrix (8 bytes per entry). Blocks of 2M entries measured as fast as one block on 24.8M non-zeros.
    BLOCK_ENTRIES = 1 << 21

    def __init__(self, indptr: np.ndarray) -> None:
        lengths = np.diff(indptr)
        self.rows = len(lengths)
        self.width = self.choose_width(lengths)
        chunks_per_row = np.maximum(-(-lengths // self.width), 1)
        direct = bool(np.all(chunks_per_row == 1))
        used = self.rows if direct else int(chunks_per_row.sum())
        self.block = max(1, min(used, self.BLOCK_ENTRIES // self.width))
        self.blocks = max(1, -(-used // self.block))
        self.chunks = self.blocks * self.block  # the last block padded with empty chunks
        self.owner = None if direct else np.zeros(self.chunks, dtype=np.int32)
        if self.owner is not None:
            self.owner[:used] = np.repeat(np.arange(self.rows, dtype=np.int32), chunks_per_row)
        self._indptr = indptr
        self._first_chunk = np.concatenate([[0], np.cumsum(chunks_per_row)[:-1]])
        self._longest = int(lengths.max(initial=0))
        # The rows longer than p are a prefix of the rows sorted by length (see pad).
        self._by_length = np.argsort(-lengths, kind="stable")
        self._longer_than = self.rows - np.cumsum(np.bincount(lengths, minlength=1))

    def pad(self, flat: np.ndarray) -> np.ndarray:
        """The [chunks, width] padded form of a CSR array of these rows (aligned for _adopt).
        Entry p of every row at once, for p = 0, 1, ...: one pass over the non-zeros, with row-sized
        temporaries."""
        padded = aligned_zeros((self.chunks, self.width), flat.dtype)
        for p in range(self._longest):
            members = self._by_length[:self._longer_than[p]]
            padded[self._first_chunk[members] + p // self.width, p % self.width] = flat[self._indptr[members] + p]
        return padded

    @classmethod
    def choose_width(cls, lengths: np.ndarray) -> int:
        longest, nnz = max(int(lengths.max(initial=0)), 1), max(int(lengths.sum()), 1)
        if len(lengths) * longest <= cls.MAX_PADDING * nnz:
            return longest

        def cost(width: int) -> int:
            chunks = int(np.maximum(-(-lengths // width), 1).sum())
            return chunks * width + 2 * chunks  # stored entries, plus a scatter entry per chunk

        return min((1 << k for k in range(longest.bit_length())), key=cost)


class TfObjective:
    """The local objective in TensorFlow (float64), compiled by XLA.

    The rows are a PaddedRows matrix: X b is a gather and a row sum (one loop, as XLA fuses it),
    X^T r a scatter-add per block. Against tf.sparse.sparse_dense_matmul on one SparseTensor (the
    former engine), one loss-and-gradient evaluation measured 1.6 ms vs 3.5 ms on a9a and 71-80 ms
    vs 194 ms on 24.8M non-zeros, with half the bytes per non-zero.
    The functions are traced once, for a fixed input shape and without AutoGraph (no data-dependent
    control flow), and the solver's ones compiled by ``compile``, so the solver's calls pay neither.
    The rows' CSR arrays are not kept.
    """

    def __init__(self, rows: SparseRows, num_features: int, task: Task, release_rows: bool = False) -> None:
        """``release_rows``: empty the rows' CSR arrays, each dropped once padded, so the peak holds
        the non-zeros about 1.7 times (20 bytes per entry for 12), not 3 times (CSR, padded numpy and
        TensorFlow's copy at once)."""
        import tensorflow as tf

        self.num_features = num_features
        n, d = rows.rows, num_features
        layout = PaddedRows(rows.indptr)
        indices, values = rows.indices, rows.values
        if release_rows:
            rows.release_features()  # ``indices`` and ``values`` are now the last references
        padded = layout.pad(indices)
        del indices
        index = _adopt(padded)
        del padded
        padded = layout.pad(values)
        del values
        value = _adopt(padded)
        del padded
        chunks, width, block, blocks = layout.chunks, layout.width, layout.block, layout.blocks
        owner = None if layout.owner is None else _adopt(layout.owner)
        del layout
        y, w, o = _adopt(rows.label), _adopt(rows.weight), _adopt(rows.offset)

        def product(b: Any, values: Any) -> Any:
            """X b, with X's values replaced by ``values`` (same pattern)."""
            chunk_sums = tf.reduce_sum(tf.gather(b, index) * values, axis=1)
            return chunk_sums[:n] if owner is None else tf.math.unsorted_segment_sum(chunk_sums, owner, n)

        def transposed_product(r: Any, squared: bool = False) -> Any:
            """X^T r (with X's values squared if asked), one block of chunks at a time: XLA does not
            fuse the products into the scatter-add, so they take a temporary the size of what it adds."""
            per_chunk = tf.pad(r, [[0, chunks - n]]) if owner is None else tf.gather(r, owner)

            def add_block(k: Any, total: Any) -> tuple[Any, Any]:
                start = k * block
                block_value = tf.slice(value, [start, 0], [block, width])
                block_value = block_value * block_value if squared else block_value
                updates = block_value * tf.slice(per_chunk, [start], [block])[:, None]
                return k + 1, total + tf.math.unsorted_segment_sum(
                    tf.reshape(updates, [-1]), tf.reshape(tf.slice(index, [start, 0], [block, width]), [-1]), d)

            return tf.while_loop(lambda k, _: k < blocks, add_block, (tf.constant(0), tf.zeros([d], tf.float64)))[1]

        pointwise = Loss(task)

        def loss_and_derivatives(m: Any) -> tuple[Any, Any, Any]:
            return pointwise.tf_terms(y, m)

        def value_and_gradient(b: Any) -> tuple[Any, Any]:
            loss, slope, _ = loss_and_derivatives(product(b, value) + o)
            return tf.reduce_sum(w * loss), transposed_product(w * slope)

        def hessian_diagonal(b: Any) -> Any:
            _, _, curvature = loss_and_derivatives(product(b, value) + o)
            return transposed_product(w * curvature, squared=True)

        def hessian_times(b: Any, v: Any) -> Any:
            """H v = X^T diag(w loss'') X v."""
            _, _, curvature = loss_and_derivatives(product(b, value) + o)
            return transposed_product(w * curvature * product(v, value))

        def scores(b: Any) -> Any:
            return product(b, value)

        vector = tf.TensorSpec([d], tf.float64)

        def compiled(function: Callable[..., Any], *signature: Any) -> Any:
            return tf.function(function, input_signature=signature, autograph=False,
                               jit_compile=True).get_concrete_function()

        self._value_and_gradient = compiled(value_and_gradient, vector)
        self._hessian_diagonal = compiled(hessian_diagonal, vector)
        self._hessian_times = compiled(hessian_times, vector, vector)
        self._scores = compiled(scores, vector)

    def compile(self) -> float:
        """Compiles the solver's functions (XLA compiles a function at its first call), so that the
        solver's time is the solver's; returns the seconds it took. Scoring compiles on first use."""
        started = time.monotonic()
        zero = _constant(np.zeros(self.num_features))
        self._value_and_gradient(zero)
        self._hessian_diagonal(zero)
        return time.monotonic() - started

    def value_and_gradient(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, g = self._value_and_gradient(_constant(b))
        return np.array([float(f)]), g.numpy()

    def hessian_diagonal(self, b: np.ndarray) -> np.ndarray:
        return self._hessian_diagonal(_constant(b)).numpy()

    def hessian_times(self, b: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self._hessian_times(_constant(b), _constant(v)).numpy()

    def hessian(self, b: np.ndarray) -> np.ndarray:
        """The dense local Hessian, one column per Hessian-vector product (small dimensions only)."""
        point, columns = _constant(b), np.eye(self.num_features)
        return np.stack([self._hessian_times(point, _constant(e)).numpy() for e in columns], axis=1)

    def scores(self, b: np.ndarray) -> np.ndarray:
        return self._scores(_constant(b)).numpy()


def _constant(b: np.ndarray) -> Any:
    import tensorflow as tf

    return tf.constant(b, dtype=tf.float64)


class ScipyObjective:
    """The same local objective with scipy.sparse CSR products (the `compute: scipy` option).

    On one CPU, scipy's CSR kernels beat TensorFlow's several-fold on small problems (see bench
    fixed_effect); the all-reduce between workers still goes through TensorFlow.
    """

    def __init__(self, rows: SparseRows, num_features: int, task: Task, release_rows: bool = False) -> None:
        """``release_rows`` is moot: the matrix shares the rows' arrays."""
        self.num_features = num_features
        self._rows, self._loss = rows, Loss(task)
        self._x = rows.to_scipy(num_features)
        self._xt = self._x.T  # a CSC view: no copy

    def value_and_gradient(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self._rows
        m = self._x @ b + r.offset
        return (np.array([float(np.dot(r.weight, self._loss.value(r.label, m)))]),
                self._xt @ (r.weight * self._loss.derivative(r.label, m)))

    def _curvature(self, b: np.ndarray) -> np.ndarray:
        r = self._rows
        return r.weight * self._loss.second_derivative(r.label, self._x @ b + r.offset)

    def hessian_diagonal(self, b: np.ndarray) -> np.ndarray:
        return self._x.multiply(self._x).T @ self._curvature(b)

    def hessian_times(self, b: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self._xt @ (self._curvature(b) * (self._x @ v))

    def compile(self) -> float:
        return 0.0  # nothing to compile

    def hessian(self, b: np.ndarray) -> np.ndarray:
        """Dense X^T diag(w h) X (small dimensions only)."""
        return (self._xt @ self._x.multiply(self._curvature(b)[:, None])).toarray()

    def scores(self, b: np.ndarray) -> np.ndarray:
        return self._x @ b


ObjectiveFactory = Callable[..., Objective]  # (rows, num_features, task, release_rows=False)
OBJECTIVES: dict[str, ObjectiveFactory] = {"tensorflow": TfObjective, "scipy": ScipyObjective}
