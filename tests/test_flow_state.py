"""A flow run's state lives with its output and one run holds the output at a time (issue 22, item 6).

Shell-command flows (no Spark): the runner's bookkeeping is what is tested. Storage-level pieces
(create-if-absent, the lease) run on local disk and on the dev cluster's HDFS."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from glmix.errors import GlmixError
from glmix.flow.azkaban import Flow, Node, write_project
from glmix.flow.lease import Lease, LeaseHeld
from glmix.flow.runner import LocalRunner
from glmix.io.storage import join, storage_for


def test_create_new_lets_exactly_one_of_many_writers_win(storage_root: str) -> None:
    uri = join(storage_root, "claims", "version-1")
    storage = storage_for(uri)
    wins: list[int] = []

    def claim(k: int) -> None:
        if storage.create_new(uri, f"writer {k}".encode()):
            wins.append(k)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert storage.read_bytes(uri) == f"writer {wins[0]}".encode()   # whole, and the winner's
    assert not storage.create_new(uri, b"late")
    assert [e.name for e in storage.list(join(storage_root, "claims"))] == ["version-1"]   # no spool left


def test_lease_refuses_a_second_holder_until_released_or_expired(storage_root: str) -> None:
    first = Lease(storage_root, "flow demo", renew_every=0.2, expires_after=1.0)
    first.acquire()
    second = Lease(storage_root, "flow demo", renew_every=0.2, expires_after=1.0)
    with pytest.raises(LeaseHeld, match=rf"flow demo: another run holds .*lease.json: run {first.run_id} on .* \(pid "):
        second.acquire()
    time.sleep(1.5)                  # renewed meanwhile: still held
    with pytest.raises(LeaseHeld):
        second.acquire()
    first.release()
    second.acquire()                 # free again
    holder = second.holder()
    assert holder is not None and holder.run_id == second.run_id
    second._stop.set()               # this holder "dies": nothing renews its lease any more
    time.sleep(1.3)
    third = Lease(storage_root, "flow demo", renew_every=0.2, expires_after=1.0)
    third.acquire()                  # a stale lease is taken over
    assert third.holder().run_id == third.run_id  # type: ignore[union-attr]
    third.release()
    assert not storage_for(storage_root).exists(join(storage_root, "lease.json"))


def test_a_waiting_run_gets_the_lease_when_the_holder_releases_it(tmp_path: Path) -> None:
    holder = Lease(str(tmp_path), "flow demo")
    holder.acquire()
    threading.Timer(0.5, holder.release).start()
    waiter = Lease(str(tmp_path), "flow demo")
    started = time.monotonic()
    waiter.acquire(wait=10, poll=0.1)
    assert 0.4 < time.monotonic() - started < 5
    waiter.release()


def shell_flow(tmp_path: Path, project: str = "project") -> Path:
    """make-data -> a -> b: each writes a published output (a directory with _SUCCESS) and counts its runs."""
    out = tmp_path / "out"

    def publish(name: str) -> str:
        return f"echo x >> {tmp_path}/runs-{name}; mkdir -p {out}/{name}; touch {out}/{name}/_SUCCESS"

    nodes = [Node("a", publish("a"), [], {"glmix.outputs": f"{out}/a", "glmix.inputs": f"{tmp_path}/data"}),
             Node("b", publish("b"), ["a"], {"glmix.outputs": f"{out}/b"}),
             Node("slow", f"sleep ${{sleep}}; {publish('slow')}", ["b"], {"glmix.outputs": f"{out}/slow"})]
    flow = Flow("shell", nodes, {"glmix.state": str(out / "_flow"), "sleep": "0"})
    return write_project(tmp_path / project, "shell", flow, {})


def runs(tmp_path: Path, name: str) -> int:
    path = tmp_path / f"runs-{name}"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_stage_counts_as_done_only_while_its_output_and_inputs_stand(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "part-0.avro").write_bytes(b"12345")
    project = shell_flow(tmp_path)
    assert [r.status for r in LocalRunner(project).run()] == ["succeeded"] * 3
    assert [r.status for r in LocalRunner(project).run()] == ["skipped"] * 3
    assert (tmp_path / "out" / "_flow" / "state.json").exists() and not (project / ".glmix-run" / "state.json").exists()

    # the whole output deleted (the user's report: "16 stages in 0.0s", then a missing file)
    shutil.rmtree(tmp_path / "out")
    assert [r.status for r in LocalRunner(project).run()] == ["succeeded"] * 3
    # one output deleted: that stage and those after it
    shutil.rmtree(tmp_path / "out" / "b")
    assert [r.status for r in LocalRunner(project).run()] == ["skipped", "succeeded", "succeeded"]
    # new data under the same path: everything from the stage that reads it
    (tmp_path / "data" / "part-1.avro").write_bytes(b"678")
    assert [r.status for r in LocalRunner(project).run()] == ["succeeded"] * 3
    # another project directory (another machine) resumes from the state on storage
    assert [r.status for r in LocalRunner(shell_flow(tmp_path, "elsewhere")).run()] == ["skipped"] * 3
    assert (runs(tmp_path, "a"), runs(tmp_path, "b"), runs(tmp_path, "slow")) == (3, 4, 4)


def test_a_run_that_overlaps_a_running_one_refuses_or_waits(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    project = shell_flow(tmp_path)
    first = threading.Thread(target=lambda: LocalRunner(project, overrides={"sleep": "2"}).run())
    first.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "out" / "_flow" / "lease.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(GlmixError, match=r"flow shell: another run holds .*_flow/lease.json: run \w+ on "):
        LocalRunner(project).run()
    started = time.monotonic()
    waited = LocalRunner(project, overrides={"sleep": "2"}, lease_wait=30).run()   # waits, then finds the work done
    first.join()
    assert time.monotonic() - started > 0.5
    assert [r.status for r in waited] == ["skipped"] * 3
    assert runs(tmp_path, "slow") == 1
