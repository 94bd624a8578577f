"""A random effect's per-entity coefficients as sharded, read-only LMDB files.

LMDB (py-lmdb) keeps a B-tree in one memory-mapped file that readers use without copying and
without a server; a shard is written once, by the Spark task that holds its entities (keys
appended in byte order), and never changed, as read-only stores were built on Hadoop and pushed
to serving hosts. `bench serving` compares it with SQLite, the other embedded candidate.

An entity's value is its model over the coordinate's feature index: n (uint32 little-endian),
n int32 feature indices, n float64 coefficients. Its shard is crc32(utf-8 id) mod shards: Spark's
``crc32`` function computes the same number, so the export job and the scorer agree.
"""

from __future__ import annotations

import struct
import threading
import weakref
import zlib
from collections.abc import Iterable
from pathlib import Path

import lmdb
import numpy as np

MAP_SIZE = 1 << 40          # address space only: the file grows with what is written
COMMIT_EVERY = 50_000       # puts per write transaction (bounds the transaction's dirty pages)
_COUNT = struct.Struct("<I")


def shard_of(entity_id: str, shards: int) -> int:
    return zlib.crc32(entity_id.encode()) % shards


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.lmdb"


def encode(indices: np.ndarray, values: np.ndarray) -> bytes:
    return (_COUNT.pack(len(indices)) + indices.astype("<i4", copy=False).tobytes()
            + values.astype("<f8", copy=False).tobytes())


def decode(buffer: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
    (n,) = _COUNT.unpack_from(buffer)
    indices = np.frombuffer(buffer, dtype="<i4", count=n, offset=4)
    values = np.frombuffer(buffer, dtype="<f8", count=n, offset=4 + 4 * n)
    return indices, values


def write_shard(path: Path, items: Iterable[tuple[bytes, bytes]]) -> int:
    """Write (key, value) pairs, keys in ascending byte order, into a new store; the entity count."""
    env = lmdb.open(str(path), subdir=False, map_size=MAP_SIZE, lock=False, sync=False, metasync=False)
    count = 0
    try:
        txn = env.begin(write=True)
        for key, value in items:
            if not txn.put(key, value, append=True):
                raise ValueError(f"entity {key.decode(errors='replace')!r} written twice")
            count += 1
            if count % COMMIT_EVERY == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
        env.sync(True)
    finally:
        env.close()
    return count


class _Shard:
    """One open store file. LMDB refuses to open a file twice in one process, so scorers of one
    bundle (a service switching back to a version it served) share it; it closes with its last user."""

    _open: weakref.WeakValueDictionary[str, _Shard] = weakref.WeakValueDictionary()
    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.env = lmdb.open(path, subdir=False, readonly=True, lock=False, readahead=False, max_readers=1024)

    @classmethod
    def of(cls, path: Path) -> _Shard:
        key = str(path.resolve())
        with cls._lock:
            shard = cls._open.get(key)
            if shard is None:
                shard = cls._open[key] = cls(key)
            return shard


class EntityStore:
    """The shards of one random effect, open for reading (thread-safe: a read transaction per lookup)."""

    def __init__(self, paths: list[Path]) -> None:
        self._shards = [_Shard.of(p) for p in paths]
        self._envs = [s.env for s in self._shards]

    def get(self, entity_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        key = entity_id.encode()
        env = self._envs[zlib.crc32(key) % len(self._envs)]
        with env.begin() as txn:
            value = txn.get(key)
        return None if value is None else decode(value)

    def __len__(self) -> int:
        return sum(int(env.stat()["entries"]) for env in self._envs)

    def close(self) -> None:
        """Let go of the files (each closes when no other store of this process uses it)."""
        self._shards, self._envs = [], []
