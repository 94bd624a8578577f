"""A real Hadoop 3.5 cluster on this machine (HDFS + YARN daemons in their own JVMs) for dev and tests.

    python cluster/devcluster.py up | down | status | jars | env

`up` resolves the Hadoop jars from Maven Central with cluster/pom.xml (cached under
.cache/hadoop/lib), writes the configuration under the run directory, starts NameNode, DataNode,
ResourceManager and one NodeManager per node, and waits until HDFS is out of safe mode and every
NodeManager has registered. HDFS and the ResourceManager listen on 127.0.0.1; node N's
NodeManager listens on its own loopback address 127.0.0.N, with its own configuration, local and
log directories, so YARN sees N hosts that share no local directory: what a container leaves on
its node's disk is not there when a retry runs on another node, as on a real cluster.

Settings come from the environment: GLMIX_CLUSTER_DIR (run directory, default .cluster in the
repo), GLMIX_CLUSTER_PORT_BASE (first of the ports, default 19000), GLMIX_CLUSTER_NODES
(NodeManagers, default 2) and GLMIX_CLUSTER_NODE_MB (each NodeManager's memory for containers,
default 8192: the tests' placement assumptions; a benchmark whose fixed-effect worker must fit beside
a Spark executor asks more). Standard library only, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parents[1]
HADOOP_VERSION = "3.5.0"
LIB_DIR = REPO / ".cache" / "hadoop" / "lib"
READY_TIMEOUT_S = 180

JAVA17_OPENS = [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in (
    "java.lang", "java.lang.reflect", "java.io", "java.net", "java.nio", "java.util",
    "java.util.concurrent", "sun.nio.ch", "sun.security.util", "sun.security.x509")]


@dataclass(frozen=True)
class Ports:
    """Every port the cluster binds, derived from one base so a second cluster can coexist."""

    base: int

    @property
    def named(self) -> dict[str, int]:
        names = ["namenode-rpc", "namenode-http", "datanode-data", "datanode-http", "datanode-ipc",
                 "rm-rpc", "rm-scheduler", "rm-tracker", "rm-admin", "rm-http",
                 "nm-rpc", "nm-localizer", "nm-http", "nm-collector"]
        return {name: self.base + i for i, name in enumerate(names)}

    def __getitem__(self, name: str) -> int:
        return self.named[name]


@dataclass(frozen=True)
class Daemon:
    name: str
    main_class: str
    heap_mb: int
    node: int = 0          # a NodeManager's node (1, 2, ...), which has its own configuration; 0 for the others


MASTERS = [
    Daemon("namenode", "org.apache.hadoop.hdfs.server.namenode.NameNode", 512),
    Daemon("datanode", "org.apache.hadoop.hdfs.server.datanode.DataNode", 384),
    Daemon("resourcemanager", "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager", 768),
]
NODEMANAGER = "org.apache.hadoop.yarn.server.nodemanager.NodeManager"
DEFAULT_NODES = 2
MAX_NODES = 8

# Sized for a 2-core / 24 GB machine: each node has room for well over six 512 MB containers at
# once, vcores over-committed so that many small containers fit.
NM_MEMORY_MB = 8192
MIN_NODE_MEMORY_MB = 2048     # an application master and one small container
NM_VCORES = 8


def node_host(node: int) -> str:
    """Node N's own loopback address: 127.0.0.N (Linux routes all of 127.0.0.0/8 to loopback)."""
    return f"127.0.0.{node}"


QUICK_JVM = "-XX:TieredStopAtLevel=1"


class ClusterError(Exception):
    """A one-line reason the cluster could not be brought up or inspected."""


class Cluster:
    def __init__(self, run_dir: Path, ports: Ports, nodes: int = DEFAULT_NODES,
                 node_memory_mb: int = NM_MEMORY_MB) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ClusterError(f"GLMIX_CLUSTER_NODES: {nodes} is not between 1 and {MAX_NODES}")
        if node_memory_mb < MIN_NODE_MEMORY_MB:
            raise ClusterError(f"GLMIX_CLUSTER_NODE_MB: {node_memory_mb} is less than {MIN_NODE_MEMORY_MB} MB")
        self.run_dir = run_dir
        self.ports = ports
        self.nodes = nodes
        self.node_memory_mb = node_memory_mb
        self.conf_dir = run_dir / "conf"
        self.spark_conf_dir = self.conf_dir / "spark"
        self.log_dir = run_dir / "logs"
        self.pid_dir = run_dir / "pids"
        self.daemons = MASTERS + [Daemon(f"nodemanager-{n}", NODEMANAGER, 512, n) for n in range(1, nodes + 1)]

    @classmethod
    def from_environment(cls) -> Cluster:
        run_dir = Path(os.environ.get("GLMIX_CLUSTER_DIR", REPO / ".cluster")).resolve()
        nodes = os.environ.get("GLMIX_CLUSTER_NODES", str(DEFAULT_NODES))
        if not nodes.isdigit():
            raise ClusterError(f"GLMIX_CLUSTER_NODES: {nodes!r} is not a number of nodes")
        memory = os.environ.get("GLMIX_CLUSTER_NODE_MB", str(NM_MEMORY_MB))
        if not memory.isdigit():
            raise ClusterError(f"GLMIX_CLUSTER_NODE_MB: {memory!r} is not a number of MB")
        return cls(run_dir, Ports(int(os.environ.get("GLMIX_CLUSTER_PORT_BASE", "19000"))), int(nodes), int(memory))

    @property
    def hosts(self) -> list[str]:
        """The NodeManagers' addresses (YARN names node 1 by its canonical name, localhost)."""
        return [node_host(n) for n in range(1, self.nodes + 1)]

    def node_conf_dir(self, node: int) -> Path:
        return self.conf_dir / "nodes" / node_host(node)

    # ---------------------------------------------------------------- jars and configuration
    def ensure_jars(self) -> None:
        """Resolve Hadoop from Maven Central once; later runs reuse the cached jars."""
        stamp = LIB_DIR / f".hadoop-{HADOOP_VERSION}"
        if stamp.exists():
            return
        if not shutil.which("mvn"):
            raise ClusterError("Maven (mvn) is not on PATH; it is needed once to fetch the Hadoop jars")
        print(f"resolving Apache Hadoop {HADOOP_VERSION} from Maven Central into {LIB_DIR} ...", flush=True)
        tmp = LIB_DIR.with_name("lib.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = ["mvn", "-q", "-B", "-f", str(REPO / "cluster" / "pom.xml"),
               "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ClusterError("mvn failed to resolve Hadoop jars:\n" + result.stdout[-3000:] + result.stderr[-3000:])
        shutil.rmtree(LIB_DIR, ignore_errors=True)
        tmp.rename(LIB_DIR)
        stamp.touch()

    def write_config(self) -> None:
        p = self.ports
        data = self.run_dir / "data"
        host = "127.0.0.1"
        core = {
            "fs.defaultFS": f"hdfs://{host}:{p['namenode-rpc']}",
            "hadoop.tmp.dir": str(data / "tmp"),
            "hadoop.http.staticuser.user": os.environ.get("USER", "root"),
        }
        hdfs = {
            "dfs.replication": "1",
            "dfs.namenode.name.dir": str(data / "namenode"),
            "dfs.datanode.data.dir": str(data / "datanode"),
            "dfs.namenode.rpc-address": f"{host}:{p['namenode-rpc']}",
            "dfs.namenode.http-address": f"{host}:{p['namenode-http']}",
            "dfs.datanode.address": f"{host}:{p['datanode-data']}",
            "dfs.datanode.http.address": f"{host}:{p['datanode-http']}",
            "dfs.datanode.ipc.address": f"{host}:{p['datanode-ipc']}",
            "dfs.datanode.hostname": host,
            "dfs.webhdfs.enabled": "true",
            "dfs.permissions.enabled": "false",
            "dfs.namenode.safemode.extension": "0",
            "dfs.namenode.safemode.min.datanodes": "0",
            "dfs.datanode.du.reserved": "0",
            "dfs.namenode.resource.du.reserved": "104857600",
        }
        env_whitelist = ",".join([
            "JAVA_HOME", "HADOOP_COMMON_HOME", "HADOOP_HDFS_HOME", "HADOOP_CONF_DIR", "HADOOP_YARN_HOME",
            "HADOOP_HOME", "CLASSPATH_PREPEND_DISTCACHE", "PATH", "LANG", "TZ", "JDK_JAVA_OPTIONS"])
        yarn = {
            "yarn.resourcemanager.hostname": host,
            "yarn.resourcemanager.address": f"{host}:{p['rm-rpc']}",
            "yarn.resourcemanager.scheduler.address": f"{host}:{p['rm-scheduler']}",
            "yarn.resourcemanager.resource-tracker.address": f"{host}:{p['rm-tracker']}",
            "yarn.resourcemanager.admin.address": f"{host}:{p['rm-admin']}",
            "yarn.resourcemanager.webapp.address": f"{host}:{p['rm-http']}",
            "yarn.nodemanager.resource.memory-mb": str(self.node_memory_mb),
            "yarn.nodemanager.resource.cpu-vcores": str(NM_VCORES),
            "yarn.scheduler.minimum-allocation-mb": "128",
            "yarn.scheduler.maximum-allocation-mb": str(self.node_memory_mb),
            "yarn.scheduler.maximum-allocation-vcores": str(NM_VCORES),
            "yarn.nodemanager.vmem-check-enabled": "false",
            "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage": "99.9",
            "yarn.nodemanager.disk-health-checker.min-free-space-per-disk-mb": "100",
            "yarn.nodemanager.env-whitelist": env_whitelist,
            "yarn.nodemanager.delete.debug-delay-sec": "300",
            "yarn.log-aggregation-enable": "true",
            "yarn.nodemanager.remote-app-log-dir": "/tmp/logs",
            "yarn.log-aggregation.retain-seconds": "86400",
            "yarn.application.classpath": f"{self.conf_dir},{LIB_DIR}/*",
            "yarn.resourcemanager.scheduler.class":
                "org.apache.hadoop.yarn.server.resourcemanager.scheduler.capacity.CapacityScheduler",
            "yarn.resourcemanager.nodemanager-connect-retries": "3",
            "yarn.resourcemanager.nodemanagers.heartbeat-interval-ms": "500",
            "yarn.client.application-client-protocol.poll-interval-ms": "100",
            "yarn.system-metrics-publisher.enabled": "false",
            "yarn.timeline-service.enabled": "false",
        }
        capacity = {
            "yarn.scheduler.capacity.root.queues": "default",
            "yarn.scheduler.capacity.root.default.capacity": "100",
            "yarn.scheduler.capacity.root.default.maximum-capacity": "100",
            "yarn.scheduler.capacity.root.default.state": "RUNNING",
            "yarn.scheduler.capacity.root.default.acl_submit_applications": "*",
            "yarn.scheduler.capacity.root.default.acl_administer_queue": "*",
            "yarn.scheduler.capacity.maximum-am-resource-percent": "0.6",
            "yarn.scheduler.capacity.node-locality-delay": "-1",
            # one container per node heartbeat, so a job's containers spread over the nodes rather
            # than filling the first node that reports (and nodes report twice a second)
            "yarn.scheduler.capacity.per-node-heartbeat.maximum-container-assignments": "1",
        }
        log4j = ("log4j.rootLogger=INFO,console\n"
                 "log4j.appender.console=org.apache.log4j.ConsoleAppender\n"
                 "log4j.appender.console.target=System.err\n"
                 "log4j.appender.console.layout=org.apache.log4j.PatternLayout\n"
                 "log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n\n"
                 "log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR\n")
        # the clients' configuration, then each node's: the same plus where its NodeManager lives
        shutil.rmtree(self.conf_dir / "nodes", ignore_errors=True)
        for conf_dir, node_yarn in [(self.conf_dir, {})] + [(self.node_conf_dir(n), self.node_settings(n))
                                                            for n in range(1, self.nodes + 1)]:
            conf_dir.mkdir(parents=True, exist_ok=True)
            for name, props in [("core-site.xml", core), ("hdfs-site.xml", hdfs), ("yarn-site.xml", yarn | node_yarn),
                                ("capacity-scheduler.xml", capacity)]:
                (conf_dir / name).write_text(_hadoop_xml(props))
            (conf_dir / "log4j.properties").write_text(log4j)
        # what a gateway host's Spark client configuration says about this cluster (SPARK_CONF_DIR):
        # everything binds to loopback, in the client, the application master and the executors; and
        # as this cluster runs small test data, JVMs compile with C1 alone (glmix.spark.session's quick
        # start) in the containers: each node of a literal flow starts cold JVMs on two cores
        spark = self.conf_dir / "spark"
        spark.mkdir(exist_ok=True)
        (spark / "spark-env.sh").write_text(f"SPARK_LOCAL_IP={host}\nHADOOP_CONF_DIR={self.conf_dir}\n")
        (spark / "spark-defaults.conf").write_text("".join(f"{key} {value}\n" for key, value in {
            "spark.driver.host": host, "spark.driver.bindAddress": host,
            "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": host, "spark.executorEnv.SPARK_LOCAL_IP": host,
            "spark.driver.extraJavaOptions": QUICK_JVM, "spark.executor.extraJavaOptions": QUICK_JVM,
            "spark.yarn.am.memory": "512m", "spark.yarn.maxAppAttempts": "1", "spark.ui.enabled": "false",
            "spark.yarn.report.interval": "500ms"}.items()))
        # HttpServer2 wants webapps/<name> on the classpath; the Maven jars ship only YARN's.
        for app in ("hdfs", "datanode", "secondary", "static"):
            (self.run_dir / "webapps-root" / "webapps" / app).mkdir(parents=True, exist_ok=True)

    def node_settings(self, node: int) -> dict[str, str]:
        """Node N's NodeManager: its own address (same ports, its own loopback IP), disks and logs."""
        p, host = self.ports, node_host(node)
        return {
            "yarn.nodemanager.hostname": host,
            "yarn.nodemanager.address": f"{host}:{p['nm-rpc']}",
            "yarn.nodemanager.localizer.address": f"{host}:{p['nm-localizer']}",
            "yarn.nodemanager.webapp.address": f"{host}:{p['nm-http']}",
            "yarn.nodemanager.collector-service.address": f"{host}:{p['nm-collector']}",
            "yarn.nodemanager.local-dirs": str(self.run_dir / "data" / f"nm-local-{node}"),
            "yarn.nodemanager.log-dirs": str(self.log_dir / f"containers-{node}"),
        }

    def daemon_conf_dir(self, daemon: Daemon) -> Path:
        return self.node_conf_dir(daemon.node) if daemon.node else self.conf_dir

    def java_command(self, main_class: str, heap_mb: int, log_name: str, conf_dir: Path | None = None) -> list[str]:
        java = _java()
        classpath = os.pathsep.join([str(conf_dir or self.conf_dir), str(self.run_dir / "webapps-root"),
                                     f"{LIB_DIR}/*"])
        return [java, f"-Xmx{heap_mb}m", *JAVA17_OPENS,
                f"-Dhadoop.log.dir={self.log_dir}", f"-Dhadoop.log.file={log_name}.log",
                f"-Dyarn.log.dir={self.log_dir}", "-Dhadoop.root.logger=INFO,console",
                "-Djava.net.preferIPv4Stack=true", "-cp", classpath, main_class]

    def daemon_env(self, conf_dir: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["HADOOP_CONF_DIR"] = str(conf_dir or self.conf_dir)
        env["JAVA_HOME"] = _java_home()
        # Read by every Java 9+ launcher in containers (Skein's ApplicationMaster adds no flags).
        env["JDK_JAVA_OPTIONS"] = " ".join(JAVA17_OPENS)
        env["PATH"] = f"{REPO / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    # ---------------------------------------------------------------- lifecycle
    def pid(self, daemon: Daemon) -> int | None:
        pid_file = self.pid_dir / f"{daemon.name}.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text())
        return pid if _alive(pid) else None

    def running(self) -> list[Daemon]:
        return [d for d in self.daemons if self.pid(d) is not None]

    def log_path(self, daemon: Daemon) -> Path:
        return self.log_dir / f"{daemon.name}.log"

    def up(self) -> bool:
        """Start the cluster; returns False when it was already running (nothing started)."""
        running = self.running()
        if len(running) == len(self.daemons) and not self.stray_pid_files():
            self.wait_ready()
            print(f"cluster already running ({self.run_dir}, {self.nodes} nodes)")
            return False
        if running or self.stray_pid_files():
            self.down()
        _java()
        self.ensure_jars()
        self.check_ports_free()
        self.write_config()
        for d in (self.log_dir, self.pid_dir):
            d.mkdir(parents=True, exist_ok=True)
        if not (self.run_dir / "data" / "namenode" / "current").exists():
            self.run_java("org.apache.hadoop.hdfs.server.namenode.NameNode", ["-format", "-force", "-nonInteractive"],
                          "namenode-format")
        started = time.monotonic()
        for daemon in self.daemons:
            self.start(daemon)
        self.wait_ready()
        self.prepare_hdfs()
        print(f"cluster up in {time.monotonic() - started:.1f}s with {self.nodes} nodes ({', '.join(self.hosts)}); "
              f"HADOOP_CONF_DIR={self.conf_dir}")
        for daemon in self.daemons:
            print(f"  {daemon.name:16s} pid {self.pid(daemon)}  log {self.log_path(daemon)}")
        return True

    def start(self, daemon: Daemon) -> None:
        log = open(self.log_path(daemon), "ab")
        conf_dir = self.daemon_conf_dir(daemon)
        proc = subprocess.Popen(self.java_command(daemon.main_class, daemon.heap_mb, daemon.name, conf_dir),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.daemon_env(conf_dir), cwd=self.run_dir, start_new_session=True)
        (self.pid_dir / f"{daemon.name}.pid").write_text(str(proc.pid))

    def run_java(self, main_class: str, args: list[str], log_name: str) -> None:
        log_path = self.log_dir / f"{log_name}.log"
        with open(log_path, "wb") as log:
            result = subprocess.run(self.java_command(main_class, 256, log_name) + args, stdout=log,
                                    stderr=subprocess.STDOUT, env=self.daemon_env(), cwd=self.run_dir)
        if result.returncode != 0:
            raise ClusterError(f"{main_class} {' '.join(args)} failed:\n{_tail(log_path)}")

    def check_ports_free(self) -> None:
        for name, port in self.ports.named.items():
            for host in self.hosts if name.startswith("nm-") else [node_host(1)]:
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        sock.bind((host, port))
                    except OSError:
                        raise ClusterError(f"port {host}:{port} ({name}) is taken; set GLMIX_CLUSTER_PORT_BASE "
                                           "to another base port") from None

    def wait_ready(self) -> None:
        """Wait for HDFS out of safe mode with a live DataNode, and every NodeManager registered."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        checks = {"HDFS (out of safe mode, DataNode live)": self.hdfs_ready,
                  f"YARN ({self.nodes} NodeManagers registered)": self.yarn_ready}
        pending = dict(checks)
        while pending:
            for daemon in self.daemons:
                if self.pid(daemon) is None:
                    raise ClusterError(f"{daemon.name} died; last lines of {self.log_path(daemon)}:\n"
                                       f"{_tail(self.log_path(daemon))}")
            for name, check in list(pending.items()):
                if check():
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise ClusterError(f"timed out after {READY_TIMEOUT_S}s waiting for {', '.join(pending)}; "
                                   f"logs in {self.log_dir}")
            if pending:
                time.sleep(0.5)

    def _get_json(self, port: int, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def hdfs_ready(self) -> bool:
        info = self._get_json(self.ports["namenode-http"],
                              "/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState")
        beans = (info or {}).get("beans") or [{}]
        state = self._get_json(self.ports["namenode-http"], "/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")
        nn_beans = (state or {}).get("beans") or [{}]
        return bool(beans[0].get("NumLiveDataNodes", 0) >= 1 and nn_beans[0].get("Safemode", "x") == "")

    def yarn_ready(self) -> bool:
        metrics = self._get_json(self.ports["rm-http"], "/ws/v1/cluster/metrics")
        return bool(metrics) and metrics["clusterMetrics"].get("activeNodes", 0) >= self.nodes

    def prepare_hdfs(self) -> None:
        """Directories a fresh cluster needs: a world-writable /tmp (aggregated logs live there) and /user."""
        user = os.environ.get("USER", "root")
        self.run_java("org.apache.hadoop.fs.FsShell", ["-mkdir", "-p", "/tmp/logs", f"/user/{user}"], "hdfs-prepare")
        self.run_java("org.apache.hadoop.fs.FsShell", ["-chmod", "1777", "/tmp", "/tmp/logs"], "hdfs-prepare")

    def stray_pid_files(self) -> list[Path]:
        """Pid files of daemons this cluster does not have (a run with another number of nodes)."""
        names = {f"{d.name}.pid" for d in self.daemons}
        return [f for f in self.pid_dir.glob("*.pid") if f.name not in names] if self.pid_dir.exists() else []

    def down(self) -> None:
        """Stop every daemon with a pid file (whatever number of nodes they were started with): the
        NodeManagers first, then the others, each group at once (SIGTERM, SIGKILL after 10 s)."""
        files = list(self.pid_dir.glob("*.pid")) if self.pid_dir.exists() else []
        for group in ([f for f in files if f.name.startswith("nodemanager")],
                      [f for f in files if not f.name.startswith("nodemanager")]):
            stopping = {}
            for pid_file in group:
                pid = self.pid(Daemon(pid_file.stem, "", 0))
                pid_file.unlink(missing_ok=True)
                if pid is not None:
                    os.killpg(pid, signal.SIGTERM)
                    stopping[pid_file.stem] = pid
            deadline = time.monotonic() + 10
            while any(_alive(pid) for pid in stopping.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            for name, pid in stopping.items():
                if _alive(pid):
                    os.killpg(pid, signal.SIGKILL)
                print(f"stopped {name} (pid {pid})")
        _kill_orphan_containers(self.run_dir)

    def status(self) -> int:
        rows = []
        for daemon in self.daemons:
            pid = self.pid(daemon)
            rss = _rss_mb(pid) if pid else None
            rows.append((daemon.name, "running" if pid else "stopped", str(pid or "-"),
                         f"{rss:.0f} MB" if rss else "-"))
        print(f"run dir: {self.run_dir}\nHADOOP_CONF_DIR={self.conf_dir}")
        print(f"{'daemon':16s} {'state':8s} {'pid':>8s} {'RSS':>8s}")
        for row in rows:
            print(f"{row[0]:16s} {row[1]:8s} {row[2]:>8s} {row[3]:>8s}")
        if len(self.running()) == len(self.daemons):
            print(f"HDFS ready: {self.hdfs_ready()}   YARN ready ({self.nodes} nodes: {', '.join(self.hosts)}): "
                  f"{self.yarn_ready()}")
            print(f"NameNode UI/WebHDFS http://127.0.0.1:{self.ports['namenode-http']}   "
                  f"ResourceManager UI http://127.0.0.1:{self.ports['rm-http']}")
            return 0
        return 1


def _hadoop_xml(props: dict[str, str]) -> str:
    body = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
                   for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


def _java() -> str:
    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") \
        else shutil.which("java")
    if not java:
        raise ClusterError("java is not on PATH (Java 17 is needed); install a JDK or set JAVA_HOME")
    return java


def _java_home() -> str:
    return os.environ.get("JAVA_HOME") or str(Path(os.path.realpath(_java())).parents[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _kill_orphan_containers(run_dir: Path) -> None:
    """Container processes outlive a killed NodeManager; stop any whose command line names our run dir."""
    marker = str(run_dir)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "nm-local" in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    cluster = Cluster.from_environment()
    try:
        if command == "up":
            cluster.up()
        elif command == "down":
            cluster.down()
        elif command == "status":
            return cluster.status()
        elif command == "jars":
            cluster.ensure_jars()
        elif command == "env":
            print(f"export HADOOP_CONF_DIR={cluster.conf_dir}")
            print(f"export SPARK_CONF_DIR={cluster.spark_conf_dir}")
            print(f"export PATH={REPO / 'bin'}:$PATH")
        else:
            print(f"usage: {argv[0]} up|down|status|jars|env", file=sys.stderr)
            return 2
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
