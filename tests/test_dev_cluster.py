"""Proof that the dev cluster is real: WebHDFS, the Hadoop CLIs, Spark on YARN with Avro, Skein."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import skein

from cluster.devcluster import NM_MEMORY_MB, Cluster, ClusterError
from glmix.io.storage import HdfsSettings
from glmix.spark.session import spark_submit_command


def run(*cmd: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def test_webhdfs_and_hdfs_cli_see_the_same_files(dev_cluster: Cluster, tmp_path: Path, hdfs_root: str) -> None:
    from hdfs import InsecureClient

    settings = HdfsSettings.from_environment()
    client = InsecureClient(settings.webhdfs_url, user=settings.user)
    path = hdfs_root.removeprefix("hdfs://")
    client.write(f"{path}/from-webhdfs.txt", data=b"written through WebHDFS\n", overwrite=True)
    assert run("hdfs", "dfs", "-cat", f"{path}/from-webhdfs.txt") == "written through WebHDFS\n"

    local = tmp_path / "from-cli.txt"
    local.write_text("written by hdfs dfs -put\n")
    run("hdfs", "dfs", "-put", "-f", str(local), f"{path}/from-cli.txt")
    with client.read(f"{path}/from-cli.txt") as reader:
        assert reader.read() == b"written by hdfs dfs -put\n"
    listing = run("hdfs", "dfs", "-ls", path)
    assert "from-webhdfs.txt" in listing and "from-cli.txt" in listing
    run("hdfs", "dfs", "-get", f"{path}/from-webhdfs.txt", str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_text() == "written through WebHDFS\n"
    run("hdfs", "dfs", "-rm", f"{path}/from-cli.txt")
    assert client.status(f"{path}/from-cli.txt", strict=False) is None


def test_yarn_cli_and_sizing(dev_cluster: Cluster) -> None:
    nodes = run("yarn", "node", "-list")
    assert f"Total Nodes:{dev_cluster.nodes}" in nodes and nodes.count("RUNNING") == dev_cluster.nodes
    assert dev_cluster.nodes >= 2 and "127.0.0.2:" in nodes       # each node on its own loopback address
    local_dirs = {(dev_cluster.node_conf_dir(n) / "yarn-site.xml").read_text().split("nm-local")[1][:3]
                  for n in range(1, dev_cluster.nodes + 1)}
    assert len(local_dirs) == dev_cluster.nodes                    # no local directory shared
    classpath = run("yarn", "classpath", "--glob").strip().split(":")
    assert classpath[0] == str(dev_cluster.conf_dir)
    assert any(p.endswith("hadoop-yarn-client-3.5.0.jar") for p in classpath)
    assert NM_MEMORY_MB >= 6 * 512 + 1024  # six 512 MB containers plus an ApplicationMaster
    assert 4096 + 409 < NM_MEMORY_MB < 2 * (4096 + 409) + 512 + 384  # see the Avro job's executors


SPARK_AVRO_JOB = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
source, target = sys.argv[1], sys.argv[2]
rows = spark.createDataFrame([(str(i), float(i % 2), i % 7) for i in range(5000)], ["uid", "label", "userId"])
rows.write.mode("overwrite").format("avro").save(source)
back = spark.read.format("avro").load(source)
back.groupBy("userId").count().write.mode("overwrite").format("avro").save(target)
print("COUNT", back.count(), spark.read.format("avro").load(target).count())
tracker = spark.sparkContext._jsc.sc().statusTracker()
driver = spark.conf.get("spark.driver.host")
print("EXECUTOR_HOSTS", " ".join(sorted({e.host() for e in tracker.getExecutorInfos()} - {driver})))
spark.stop()
"""


def test_pyspark_on_yarn_reads_and_writes_avro_on_hdfs(dev_cluster: Cluster, tmp_path: Path,
                                                       hdfs_root: str) -> None:
    script = tmp_path / "avro_job.py"
    script.write_text(SPARK_AVRO_JOB)
    name = f"glmix-it-avro-{uuid.uuid4().hex[:6]}"
    # Executors of 4 GB: two (plus the ApplicationMaster) do not fit in one node's NM_MEMORY_MB, so
    # YARN must place them on two nodes; the job starts only when both have registered.
    command, env = spark_submit_command(
        "yarn", name, str(script), [f"{hdfs_root}/rows", f"{hdfs_root}/by_user"], executor_memory="4g",
        executors=2, extra={"spark.scheduler.minRegisteredResourcesRatio": "1.0",
                            "spark.scheduler.maxRegisteredResourcesWaitingTime": "180s"})
    out = run(*command, env=env)
    assert "COUNT 5000 7" in out
    executor_hosts = next(line for line in out.splitlines() if line.startswith("EXECUTOR_HOSTS")).split()[1:]
    assert len(executor_hosts) == 2, out      # the two executors on two nodes: shuffled across hosts
    finished = run("yarn", "application", "-list", "-appStates", "FINISHED")
    line = next(line for line in finished.splitlines() if name in line)
    assert "SPARK" in line and "SUCCEEDED" in line


def test_skein_containers_exchange_a_value(dev_cluster: Cluster) -> None:
    python = sys.executable
    producer = f"{python} -c \"import skein; c = skein.ApplicationClient.from_current(); " \
               f"c.kv['answer'] = b'42'; print('producer wrote 42')\""
    consumer = f"{python} -c \"import skein; c = skein.ApplicationClient.from_current(); " \
               f"print('consumer read', c.kv.wait('answer').decode())\""
    resources = skein.Resources(memory=512, vcores=1)
    # a restart each: once, in make test's two sessions at once on 2 cores, the producer's process
    # exited with 1 a second after it started (its log was aggregated away); the exchange is the point
    spec = skein.ApplicationSpec(
        name="glmix-it-skein", queue="default", max_attempts=1,
        master=skein.Master(resources=skein.Resources(memory=512, vcores=1)),
        services={"producer": skein.Service(resources=resources, script=producer, max_restarts=1),
                  "consumer": skein.Service(resources=resources, script=consumer, max_restarts=1)})
    with skein.Client() as client:
        app_id = client.submit(spec)
        deadline = time.monotonic() + 180
        while (report := client.application_report(app_id)).state not in ("FINISHED", "FAILED", "KILLED"):
            if time.monotonic() > deadline:
                client.kill_application(app_id)
                pytest.fail(f"{app_id} did not finish in 180s")
            time.sleep(1)
    if str(report.final_status) != "SUCCEEDED":
        pytest.fail(f"{report.diagnostics}\n{run('yarn', 'logs', '-applicationId', app_id, check=False)[-4000:]}")
    for _ in range(30):  # log aggregation finishes shortly after the application
        logs = run("yarn", "logs", "-applicationId", app_id, check=False)
        if "producer wrote 42" in logs and "consumer read 42" in logs:
            break
        time.sleep(1)
    assert "producer wrote 42" in logs and "consumer read 42" in logs


def test_each_node_s_memory_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GLMIX_CLUSTER_NODE_MB sizes the NodeManagers (a benchmark's worker beside an executor); the
    default keeps the placement the tests above assume; a bad value is a one-line error."""
    monkeypatch.setenv("GLMIX_CLUSTER_DIR", str(tmp_path))
    assert Cluster.from_environment().node_memory_mb == NM_MEMORY_MB
    monkeypatch.setenv("GLMIX_CLUSTER_NODE_MB", "12288")
    cluster = Cluster.from_environment()
    cluster.write_config()
    site = (cluster.node_conf_dir(1) / "yarn-site.xml").read_text()
    assert "<name>yarn.nodemanager.resource.memory-mb</name><value>12288</value>" in site.replace("\n", "").replace(" ", "")
    monkeypatch.setenv("GLMIX_CLUSTER_NODE_MB", "12g")
    with pytest.raises(ClusterError, match="GLMIX_CLUSTER_NODE_MB: '12g' is not a number of MB"):
        Cluster.from_environment()
    monkeypatch.setenv("GLMIX_CLUSTER_NODE_MB", "1024")
    with pytest.raises(ClusterError, match="GLMIX_CLUSTER_NODE_MB: 1024 is less than 2048 MB"):
        Cluster.from_environment()
