"""Spark settings every job shares: the spark-avro jar, YARN shipping, loopback-only networking.

Jobs call :func:`spark_conf` for `spark-submit --conf` pairs (or :func:`session` in-process), so
`local[*]` and `--master yarn` runs differ only in the master URL.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from pathlib import Path

import pyspark

from glmix.errors import GlmixError
from glmix.storage import storage_for

REPO = Path(__file__).resolve().parents[1]
SPARK_VERSION = pyspark.__version__
AVRO_JAR = REPO / ".cache" / "spark" / "jars" / f"spark-avro_2.13-{SPARK_VERSION}.jar"
# A local run is one short-lived JVM that sees many small queries: with the default thresholds its
# optimizing (C2) compiler keeps a core busy for the whole demo flow (79 s of compile CPU in a 69 s
# flow on 2 cores), compiling code that runs a few times. Raising the C2 thresholds ~10x leaves C2
# the truly hot methods: compile CPU 53-55 s, flow 63-66 s (README, "GAME pipeline").
LOCAL_JIT_OPTIONS = ("-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=20000 "
                     "-XX:Tier4CompileThreshold=60000 -XX:Tier4BackEdgeThreshold=400000")
# made at install by glmix.spark_classes: the classes a local run loads, mapped from one file
CLASS_ARCHIVE = REPO / ".cache" / "spark" / f"classes-{SPARK_VERSION}.jsa"


def local_java_options() -> str:
    """The driver JVM's options for a local run (the class archive when it was made)."""
    if CLASS_ARCHIVE.exists():
        return f"{LOCAL_JIT_OPTIONS} -XX:SharedArchiveFile={CLASS_ARCHIVE}"
    return LOCAL_JIT_OPTIONS


def avro_jar() -> Path:
    if not AVRO_JAR.exists():
        raise GlmixError(f"{AVRO_JAR} is missing: run `make spark-jars` (resolves spark-avro from Maven Central)")
    return AVRO_JAR


def spark_jars_archive() -> str:
    """An HDFS zip of pyspark's jars, uploaded once per content hash, for spark.yarn.archive.

    Without it every YARN submission would upload ~460 MB of jars.
    """
    jars_dir = Path(pyspark.__file__).parent / "jars"
    names = sorted(p.name for p in jars_dir.glob("*.jar"))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    local = REPO / ".cache" / "spark" / f"spark-jars-{SPARK_VERSION}-{digest}.zip"
    if not local.exists():
        partial = local.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
            for name in names:
                archive.write(jars_dir / name, name)
        partial.rename(local)
    remote = f"hdfs:///user/{os.environ.get('HADOOP_USER_NAME') or os.environ.get('USER', 'root')}/.glmix/{local.name}"
    storage = storage_for(remote)
    if not storage.exists(remote):
        tmp = remote + ".partial"
        with open(local, "rb") as src, storage.open_write(tmp) as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
        storage.delete(remote)
        storage.rename(tmp, remote)
    return remote


def spark_conf(master: str, app_name: str, executor_memory: str = "1g", executors: int = 2,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """Spark configuration for a glmix job on ``master`` (local[N] or yarn)."""
    conf = {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.jars": str(avro_jar()),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.avro.compression.codec": "deflate",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if master.startswith("local"):
        conf["spark.driver.extraJavaOptions"] = local_java_options()
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


def session(master: str = "local[2]", app_name: str = "glmix", **kwargs):
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
                         **kwargs) -> tuple[list[str], dict[str, str]]:
    """The `spark-submit` command line and environment for a job script (local[N] or yarn)."""
    command = [str(Path(sys.executable).parent / "spark-submit")]
    for key, value in spark_conf(master, app_name, **kwargs).items():
        command += ["--conf", f"{key}={value}"]
    env = {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return command + [script, *script_args], env
