"""A three-node Kafka cluster on loopback for the scale-out fault rows (``test_scaleout.py``).

Every node is broker and controller at once (KRaft, a static quorum of the three: any two keep
it), with its own ports, data and logs under ``home``. Its configuration is the embedded broker's
(``infra/kafka/server.properties``, filled as ``scripts/kafka.sh`` fills it) with a production
cluster's replication: every topic, the consumer offsets and the transaction state on three
replicas, two of them in sync for a write to be acknowledged. A node can be SIGKILLed and started
again on the same ports and data; the cluster is never the machine's shared broker.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.chaos.infra import port_open
from tests.e2e.stack import ROOT
from tests.support import free_port, wait_for

JARS = ROOT / "var" / "jars" / "kafka"
TEMPLATE = ROOT / "infra" / "kafka" / "server.properties"
LOG4J = ROOT / "infra" / "kafka" / "log4j2.properties"
STARTED = b"Kafka Server started"   # KafkaRaftServer's line once the broker is up and unfenced

#: what makes it a replicated cluster, over the single-node template
REPLICATION = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    # how often the coordinator looks for transactions past their timeout (default 10 s): a
    # producer killed inside a transaction and never restarted is aborted at its timeout, not up
    # to 10 s later
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
}


# librdkafka's admin requests that go to a coordinator can abort the whole process on an assertion
# (librdkafka#4605, open: ``rd_kafka_enq_once_del_source_return: eonce->refcnt > 0``), seen here when
# the release phase's wait_for_coordinators ran against this cluster under load. Those requests run
# in a child process, asked again if it dies, so that the test session survives them.
_READY = """
import sys
from events.kafka import wait_for_coordinators
from events.settings import load_settings
wait_for_coordinators(load_settings({"KAFKA_BOOTSTRAP_SERVERS": sys.argv[1]}), 120)
"""
_MEMBERS = """
import json, sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 2})
desc = admin.describe_consumer_groups([sys.argv[2]], request_timeout=10)[sys.argv[2]].result(15)
print(json.dumps({m.group_instance_id or m.member_id: [[tp.topic, tp.partition] for tp in m.assignment.topic_partitions]
                  for m in desc.members}))
"""


def _child(script: str, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, "PYTHONPATH": str(ROOT)})


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding, never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass
class Node:
    """One broker+controller: its id, ports and folder, and its JVM while it runs."""

    node_id: int
    home: Path
    port: int
    controller_port: int
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def conf(self) -> Path:
        return self.home / "server.properties"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_size(self) -> int:
        try:
            return (self.logs / "server.log").stat().st_size
        except OSError:
            return 0

    def started_since(self, mark: int) -> bool:
        """True once the server log has said "Kafka Server started" after byte ``mark``."""
        try:
            with open(self.logs / "server.log", "rb") as fh:
                fh.seek(mark)
                return STARTED in fh.read()
        except OSError:
            return False

    def tail(self, n: int = 20) -> str:
        out = []
        for name in ("kafka.out", "server.log"):
            try:
                out += (self.logs / name).read_text(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports and not port_open(port):
            ports.append(port)
    return ports


class KafkaCluster:
    """``size`` KRaft nodes on loopback; ``start()``/``stop()`` the whole, ``kill``/``start_node`` one."""

    replication_factor = 3

    def __init__(self, home: Path, size: int = 3, heap: str = "384m") -> None:
        ports = _free_ports(2 * size)
        self.nodes = {i: Node(i, home / f"node{i}", ports[2 * (i - 1)], ports[2 * (i - 1) + 1])
                      for i in range(1, size + 1)}
        self.heap = heap
        self._admin: AdminClient | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes.values())

    def properties(self, node: Node) -> str:
        """The node's server.properties: the template's settings, its own id, the three voters."""
        fill = {"@PORT@": str(node.port), "@CONTROLLER_PORT@": str(node.controller_port), "@DATA_DIR@": str(node.data)}
        values: dict[str, str] = {}
        for line in TEMPLATE.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            for mark, text in fill.items():
                value = value.replace(mark, text)
            values[key.strip()] = value.strip()
        values.pop("controller.quorum.bootstrap.servers", None)  # a static quorum names its voters instead
        values.update({"node.id": str(node.node_id),
                       "controller.quorum.voters": ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}"
                                                             for n in self.nodes.values()),
                       **REPLICATION})
        return "".join(f"{k}={v}\n" for k, v in values.items())

    def _java(self, node: Node, heap: str, main: list[str]) -> list[str]:
        # C1 only and the serial collector: three brokers beside the stack on a machine of two cores,
        # where start-up (class loading, compiling) is what costs; a test broker needs no peak speed
        return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                "-Djava.awt.headless=true", f"-Dkafka.logs.dir={node.logs}", f"-Dlog4j2.configurationFile={LOG4J}",
                "-cp", f"{JARS}/*", *main]

    # --- the whole cluster ------------------------------------------------------------------------
    def start(self) -> None:
        """Format the nodes' storage (first start), start every node not running, wait for all three."""
        assert list(JARS.glob("kafka_2.13-*.jar")), f"broker jars missing in {JARS}: run scripts/setup.sh jars"
        ident = cluster_id()
        formatting = []
        for node in self.nodes.values():
            node.logs.mkdir(parents=True, exist_ok=True)
            node.data.mkdir(parents=True, exist_ok=True)
            node.conf.write_text(self.properties(node))
            if not (node.data / "meta.properties").exists():
                formatting.append((node, subprocess.Popen(
                    self._java(node, "256m", ["kafka.tools.StorageTool", "format", "-t", ident, "-c", str(node.conf)]),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for node, proc in formatting:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"formatting node {node.node_id} failed: {out.decode(errors='replace')}"
        marks = {i: self._launch(node) for i, node in self.nodes.items() if not node.alive()}
        for i, mark in marks.items():
            self._wait_started(self.nodes[i], mark)
        wait_for(lambda: self.brokers() == set(self.nodes), 60, "every node registered with the cluster", interval_s=0.2)
        self.wait_coordinators()

    def wait_coordinators(self, attempts: int = 3) -> None:
        """Until the group and transaction coordinators answer (the offsets and transaction state
        topics created and loaded on three replicas): what the release phase waits for, done first
        here in a child process that may die of librdkafka#4605 and is then asked again."""
        for _ in range(attempts):
            done = _child(_READY, self.bootstrap)
            if done.returncode == 0:
                return
        raise AssertionError(f"the cluster's coordinators did not answer: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        """SIGTERM every node (all at once: nothing of theirs is kept), SIGKILL any still up after 20 s."""
        for node in self.nodes.values():
            if node.alive():
                node.popen.terminate()  # type: ignore[union-attr]
        for node in self.nodes.values():
            if node.popen is None:
                continue
            try:
                node.popen.wait(20)
            except subprocess.TimeoutExpired:
                node.popen.kill()
                node.popen.wait(10)
        self._admin = None

    # --- one node ---------------------------------------------------------------------------------
    def _launch(self, node: Node) -> int:
        mark = node.log_size()
        out = open(node.logs / "kafka.out", "ab")
        node.popen = subprocess.Popen(self._java(node, self.heap, ["kafka.Kafka", str(node.conf)]), stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        return mark

    def _wait_started(self, node: Node, mark: int) -> None:
        def up() -> bool:
            if not node.alive():
                raise AssertionError(f"kafka node {node.node_id} exited during start:\n{node.tail()}")
            return node.started_since(mark) and port_open(node.port)

        wait_for(up, 150, f"kafka node {node.node_id} on 127.0.0.1:{node.port} to start", interval_s=0.2)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no controlled shutdown, its leaderships and sessions simply end."""
        node = self.nodes[node_id]
        assert node.popen is not None and node.alive(), f"node {node_id} is not running"
        os.kill(node.popen.pid, signal.SIGKILL)
        node.popen.wait(10)

    def start_node(self, node_id: int) -> None:
        """Start one node again on its ports and data (it recovers its logs and catches up)."""
        node = self.nodes[node_id]
        assert not node.alive(), f"node {node_id} is running"
        self._wait_started(node, self._launch(node))
        wait_for(lambda: node_id in self.brokers(), 60, f"node {node_id} registered again", interval_s=0.2)

    # --- what the cluster says --------------------------------------------------------------------
    def admin(self) -> AdminClient:
        if self._admin is None:
            # log_level 2: a node killed on purpose is no error worth a line on stderr
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 2})
        return self._admin

    def brokers(self) -> set[int]:
        """Ids of the brokers the cluster's metadata lists as registered (a fenced one drops out)."""
        try:
            return set(self.admin().list_topics(timeout=5).brokers)
        except Exception:  # noqa: BLE001 - a node is starting or gone: ask again
            return set()

    def members(self, group: str) -> dict[str, set[tuple[str, int]]] | None:
        """Member (its group.instance.id, else member id) -> the partitions the group assigns it;
        None if the child process asking could not tell (it died or the coordinator is moving)."""
        done = _child(_MEMBERS, self.bootstrap, group, timeout_s=60)
        if done.returncode != 0:
            return None
        return {member: {(t, int(p)) for t, p in parts} for member, parts in json.loads(done.stdout).items()}

    def leader(self, topic: str, partition: int) -> int:
        """The node that leads ``topic``/``partition`` now (-1: none)."""
        meta = self.admin().list_topics(topic, timeout=10).topics[topic]
        return int(meta.partitions[partition].leader)

    def in_sync(self, topic: str, partition: int) -> set[int]:
        meta = self.admin().list_topics(topic, timeout=10).topics[topic]
        return set(meta.partitions[partition].isrs)

    def replication(self, topic: str) -> set[int]:
        """Replication factor of every partition of ``topic`` (one value when the topic is uniform)."""
        meta = self.admin().list_topics(topic, timeout=10).topics[topic]
        return {len(p.replicas) for p in meta.partitions.values()}
