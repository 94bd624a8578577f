"""Spark settings every job shares: the spark-avro jar, YARN shipping, loopback-only networking.

Jobs call :func:`spark_conf` for `spark-submit --conf` pairs (or :func:`session` in-process), so
`local[*]` and `--master yarn` runs differ only in the master URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyspark

from glmix.deploy import spark_jars_archive
from glmix.errors import GlmixError
from glmix.io.storage import storage_for

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

REPO = Path(__file__).resolve().parents[2]
SPARK_VERSION = pyspark.__version__
AVRO_JAR = REPO / ".cache" / "spark" / "jars" / f"spark-avro_2.13-{SPARK_VERSION}.jar"
# A local JVM's compilers. Peak: tiered compilation, its optimizing (C2) compiler held back ~10x
# (the JDK's defaults kept a core busy compiling for a whole short flow). Quick: the C1 compiler
# alone, for a run of many small queries on little data, where compiling costs more than the
# compiled code saves: the demo flow (5.5 MB) spent 53-55 s of its 2 cores' ~125 s compiling with
# peak, ~16 s with quick, and ran 61-63 -> 47-49 s; but 1M rows (314 MB) ran 2.2x slower with quick.
# C1 alone needs room: its default code cache (48 MB) fills during the demo flow, after which new
# code runs interpreted. A parallel young collector is cheaper than G1 for these heaps.
PEAK_JVM_OPTIONS = ("-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=20000 "
                    "-XX:Tier4CompileThreshold=60000 -XX:Tier4BackEdgeThreshold=400000")
QUICK_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseParallelGC"
# inputs up to this size start quick (measured: 36 MB ran 10-25% faster quick, 314 MB 2.2x slower)
QUICK_START_MAX_BYTES = 64 << 20
# made at install by glmix.spark.class_archive: the classes a local run loads, mapped from one file
CLASS_ARCHIVE = REPO / ".cache" / "spark" / f"classes-{SPARK_VERSION}.jsa"


# what glmix's jobs assume unless a spark-submit command sets otherwise (runtime SQL settings)
JOB_DEFAULTS = {"spark.sql.shuffle.partitions": "8", "spark.sql.avro.compression.codec": "deflate"}


def local_java_options(quick_start: bool = False) -> str:
    """The driver JVM's options for a local run (the class archive when it was made)."""
    options = QUICK_JVM_OPTIONS if quick_start else PEAK_JVM_OPTIONS
    if CLASS_ARCHIVE.exists():
        return f"{options} -XX:SharedArchiveFile={CLASS_ARCHIVE}"
    return options


def suits_quick_start(inputs: list[str]) -> bool:
    """Whether a local run over ``inputs`` is short enough for a quick-start JVM."""
    return sum(storage_for(uri).size(uri) for uri in inputs) <= QUICK_START_MAX_BYTES


def avro_jar() -> Path:
    if not AVRO_JAR.exists():
        raise GlmixError(f"{AVRO_JAR} is missing: run `make spark-jars` (resolves spark-avro from Maven Central)")
    return AVRO_JAR


def spark_conf(master: str, app_name: str, executor_memory: str = "1g", executors: int = 2,
               extra: dict[str, str] | None = None, quick_start: bool = False) -> dict[str, str]:
    """Spark configuration for a glmix job on ``master`` (local[N] or yarn); ``quick_start``: see
    :data:`QUICK_JVM_OPTIONS` (local runs only)."""
    conf = {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.jars": str(avro_jar()),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **JOB_DEFAULTS,
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if master.startswith("local"):
        conf["spark.driver.extraJavaOptions"] = local_java_options(quick_start)
    if master == "yarn":
        conf.update({
            "spark.submit.deployMode": "client",
            "spark.yarn.archive": spark_jars_archive(),
            "spark.executor.instances": str(executors),
            "spark.executor.memory": executor_memory,
            "spark.executor.cores": "1",
            "spark.yarn.am.memory": "512m",
            "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": "127.0.0.1",
            "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
            "spark.yarn.maxAppAttempts": "1",
        })
    conf.update(extra or {})
    return conf


def session(master: str = "local[2]", app_name: str = "glmix", **kwargs: Any) -> SparkSession:
    """A SparkSession configured by :func:`spark_conf` (for in-process jobs and tests)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # PySpark takes the workers' Python from this variable at context creation, not from the conf.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(master, app_name, **kwargs).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_submit_command(master: str, app_name: str, script: str, script_args: list[str],
                         **kwargs: Any) -> tuple[list[str], dict[str, str]]:
    """The `spark-submit` command line and environment for a job script (local[N] or yarn)."""
    command = [str(Path(sys.executable).parent / "spark-submit")]
    for key, value in spark_conf(master, app_name, **kwargs).items():
        command += ["--conf", f"{key}={value}"]
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return command + [script, *script_args], env
