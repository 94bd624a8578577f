"""A lease on storage: one run of a flow at a time on one output, whichever machine runs it.

The holder creates ``LEASE`` with create-if-absent (a link on local disks, WebHDFS CREATE without
overwrite on HDFS: the namenode creates a path at most once) — its first line says who holds it —
and renews it every ``renew_every`` seconds from a thread by appending a line with the time (never
by rewriting it: a WebHDFS overwrite leaves a moment without the file, in which another run's
create would succeed); a lease not renewed for ``expires_after`` seconds belongs to a run that
died, and the next run takes it over by renaming it aside first (a rename succeeds once), so two
runs that find the same stale lease cannot both take it. Azkaban's executors are not the machine
that ran yesterday, so the lease lives with the output, not in a local directory.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from glmix.errors import GlmixError, StorageError
from glmix.io.storage import join, storage_for

LEASE = "lease.json"


class LeaseHeld(GlmixError):
    """Another run holds the lease."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    started: float
    renewed: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"run {self.run_id} on {self.host} (pid {self.pid}) since {since}, renewed {time.time() - self.renewed:.0f}s ago"


class Lease:
    def __init__(self, directory: str, what: str, renew_every: float = 30.0, expires_after: float = 300.0) -> None:
        if expires_after <= renew_every:
            raise ValueError("expires_after must exceed renew_every")
        self.uri = join(directory, LEASE)
        self.what, self.renew_every, self.expires_after = what, renew_every, expires_after
        self.run_id = uuid.uuid4().hex[:12]
        self._storage = storage_for(self.uri)
        self._started = time.time()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "started": self._started}).encode() + b"\n"

    def holder(self) -> Holder | None:
        """Who holds the lease now and when it was last renewed (None if nobody; a lease being
        written counts as just renewed)."""
        try:
            lines = self._storage.read_bytes(self.uri).decode(errors="replace").splitlines()
        except StorageError:
            return None if not self._storage.exists(self.uri) else Holder("?", "?", 0, time.time(), time.time())
        try:
            first: dict[str, Any] = json.loads(lines[0])
        except (ValueError, IndexError):
            return Holder("?", "?", 0, time.time(), time.time())
        renewed = float(first["started"])
        for line in lines[1:]:
            try:
                renewed = float(json.loads(line)["renewed"])
            except (ValueError, KeyError, TypeError):
                continue   # a renewal being appended
        return Holder(str(first["run_id"]), str(first["host"]), int(first["pid"]), float(first["started"]), renewed)

    def acquire(self, wait: float = 0.0, poll: float = 5.0, say: Any = None) -> None:
        """Take the lease, waiting up to ``wait`` seconds for a live holder to finish; raises LeaseHeld."""
        deadline = time.monotonic() + wait
        while True:
            self._started = time.time()
            if self._storage.create_new(self.uri, self._record()):
                break
            holder = self.holder()
            if holder is not None and time.time() - holder.renewed > self.expires_after:
                self._take_over_stale()
                continue
            if holder is not None and time.monotonic() >= deadline:
                raise LeaseHeld(f"{self.what}: another run holds {self.uri}: {holder.describe()}; "
                                f"it expires {self.expires_after:.0f}s after its last renewal if that run died")
            if holder is not None and say:
                say(f"{self.what}: waiting for {holder.describe()}")
            time.sleep(poll if holder is not None else 0.0)
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.run_id}", daemon=True)
        self._renewer.start()

    def _take_over_stale(self) -> None:
        aside = f"{self.uri}.stale-{uuid.uuid4().hex[:8]}"
        try:
            self._storage.rename(self.uri, aside)   # only one of several runs finding it stale succeeds
        except (StorageError, OSError):
            return
        self._storage.delete(aside)

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            holder = self.holder()
            if holder is None or holder.run_id != self.run_id:
                return   # taken over after we stalled past expiry: nothing of ours left to renew
            self._storage.append_bytes(self.uri, json.dumps({"renewed": time.time()}).encode() + b"\n")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        holder = self.holder()
        if holder is not None and holder.run_id == self.run_id:
            self._storage.delete(self.uri)
