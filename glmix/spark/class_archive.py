"""Make the class-data-sharing archive that local Spark runs start from (once, at install).

    python -m glmix.spark.class_archive

A local run's JVM loads and verifies tens of thousands of Spark classes, a few seconds of a short
flow on 2 cores. The JDK's application class-data sharing maps them from one archive instead:
measured on the demo, session start 4.9 -> 2.8 s and the flow ~3 s faster in all. The archive is
made by running the demo's flow on a tiny dataset in a JVM started with
``-XX:ArchiveClassesAtExit``, which writes it when it exits; glmix.spark.session then starts local JVMs
with ``-XX:SharedArchiveFile``. A JVM that cannot use the archive (another JDK) warns and runs
without it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from glmix.spark.session import CLASS_ARCHIVE, QUICK_JVM_OPTIONS, session

ROWS = 3000


def make_archive(archive: Path = CLASS_ARCHIVE) -> float:
    """Writes ``archive`` (atomically); returns the seconds it took."""
    from rich.console import Console

    from glmix.data.synthetic import generate, movielens_spec
    from glmix.game.demo import demo_config
    from glmix.game.training import train_flow

    started = time.monotonic()
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    spark = session("local[2]", "glmix-class-archive", extra={
        "spark.driver.extraJavaOptions": f"{QUICK_JVM_OPTIONS} -XX:ArchiveClassesAtExit={partial} -Xlog:cds=off"})
    spark.sparkContext.setLogLevel("ERROR")
    gateway = spark.sparkContext._gateway
    assert gateway is not None, "a running local session has a Py4J gateway"
    with tempfile.TemporaryDirectory() as work:
        generate(movielens_spec(rows=ROWS), str(Path(work) / "data"))
        train_flow(demo_config(Path(work)), Path(work) / "flow", Console(stderr=True), restart=True)
    spark.stop()
    try:   # the archive is written as the JVM exits; the call itself loses its connection
        gateway.jvm.java.lang.System.exit(0)
    except Exception:  # noqa: BLE001 - py4j reports the closed connection in several ways
        pass
    gateway.proc.wait(timeout=600)
    if not partial.exists():
        raise RuntimeError(f"the JVM exited without writing {partial}")
    partial.rename(archive)
    return time.monotonic() - started


def main() -> int:
    try:
        seconds = make_archive()
    except Exception as exc:  # noqa: BLE001 - the archive only speeds start-up: say why and go on without it
        print(f"class archive not made ({type(exc).__name__}: {exc}); local Spark runs start without it",
              file=sys.stderr)
        return 0
    print(f"wrote {CLASS_ARCHIVE} ({CLASS_ARCHIVE.stat().st_size >> 20} MB) in {seconds:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
