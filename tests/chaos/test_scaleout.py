"""Scale-out under faults (issue 15): two engine instances, a three-broker Kafka cluster.

A second chaos stack (``conftest.Chaos``) on a :class:`~tests.chaos.cluster.KafkaCluster`: three
KRaft nodes on loopback, replication factor 3, ``min.insync.replicas=2``, the offsets and the
transaction state replicated alike. Every Procfile process of the chaos session runs once except
the rule engine, which runs twice (``DYNO`` alerts.1 and alerts.2: each its own ``transactional.id``
and static group member id; the range assignor gives each one partition number of every input
topic). Each row is asserted as ``test_faults.check`` asserts it (owed = received, lost 0,
duplicated 0, the round split by the strike) with its own busy proof:

- **one of two engines**: the instance owning the round's partition is caught inside a
  transaction holding the round's alerts and SIGKILLed there. It stays down: its session ends,
  the group gives its partition to the other instance, which goes on from the last commit and
  commits the partition's offsets through the end of the round's ticks (any other process that
  exits meanwhile is started again, as a platform would, and shows in the row's restarts); only
  then is the killed one started again (it rejoins and takes a share back). Proof: the open transaction's alerts,
  aborted afterwards; the partition in the other instance's assignment; its commits.
- **one of three brokers**: the broker leading the round's alerts partition is SIGKILLed once the
  round is under way, kept down while the ticks flow (10 s, and until another replica leads that
  partition), started again. Proof: it led a
  partition the round uses, another broker led it while it was down, it is back in sync after.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from alerts.config import load_engine_settings
from tests.chaos import scenario, strikes
from tests.chaos.cluster import KafkaCluster
from tests.chaos.conftest import _CHAOS, Chaos, Strike, hold
from tests.chaos.probe import KafkaLook, catch
from tests.chaos.test_faults import check
from tests.events.test_kafka import java_partition
from tests.support import wait_for

ENGINES = {"alerts": "alerts.1", "alerts2": "alerts.2"}   # process name -> DYNO
ENGINE_ROW = "SIGKILL one of two engines"
BROKER_ROW = "Kafka broker killed (1/3)"
BROKER_DOWN_S = 10


class ScaleOut(Chaos):
    """The chaos session's stack on a three-node cluster, with two engine instances."""

    warm_up_s = 900.0   # three brokers beside Spark: its first micro-batch comes later on a loaded machine

    def __init__(self, workdir: Path, admin_url: str) -> None:
        super().__init__(workdir, admin_url)
        self.cluster = KafkaCluster(workdir / "cluster")
        self.kafka = self.cluster

    def instances(self) -> dict[str, tuple[str, dict[str, str]]]:
        out = super().instances()
        for name, dyno in ENGINES.items():
            out[name] = ("alerts", {"DYNO": dyno})
        return out

    def start(self) -> None:
        super().start()
        wait_for(self.split, 90, "the two engine instances to split the input partitions", interval_s=0.5)

    # --- the engine group, as an operator sees it ---------------------------------------------------
    def transactional_ids(self) -> dict[str, str]:
        """Engine process name -> its transactional.id (also its static group member id)."""
        assert self.stack is not None
        return {name: load_engine_settings({**self.stack.env, **self.proc_env[name]}).engine_transactional_id
                for name in ENGINES}

    @property
    def group(self) -> str:
        assert self.stack is not None
        return load_engine_settings(self.stack.env).engine_group

    def assignment(self) -> dict[str, set[int]] | None:
        """Engine process name -> the ``ticks`` partitions the group assigns it (members only);
        None when the group could not be described just now."""
        assert self.settings is not None
        ticks, names = self.settings.topic("ticks"), {tid: n for n, tid in self.transactional_ids().items()}
        members = self.cluster.members(self.group)
        if members is None:
            return None
        return {names.get(m, m): {p for t, p in parts if t == ticks} for m, parts in members.items()}

    def split(self) -> bool:
        """Both instances are members, each owning partitions of its own, together all of them."""
        assert self.settings is not None
        got = self.assignment()
        if got is None:
            return False
        owned = [got.get(name, set()) for name in ENGINES]
        return all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == set(range(self.settings.kafka_partitions))

    def committed(self, topic: str) -> dict[int, int]:
        """The engine group's committed offsets of ``topic``, stable ones only (read_uncommitted: an
        OffsetFetch that does not wait for a pending transaction's offsets); the probe never joins."""
        assert self.settings is not None
        probe = Consumer({"bootstrap.servers": self.kafka.bootstrap, "group.id": self.group, "log_level": 2,
                          "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
        try:
            got = probe.committed([TopicPartition(topic, p) for p in range(self.settings.kafka_partitions)], timeout=10)
        finally:
            probe.close()
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}

    def partition_of(self, key: str) -> int:
        """Where every producer of the stack puts ``key`` (murmur2, as the Java client does)."""
        assert self.settings is not None
        return java_partition(key.encode(), self.settings.kafka_partitions)


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[ScaleOut]:
    """Module-scoped: its three brokers and its stack are gone before the next module's faults."""
    c = ScaleOut(tmp_path_factory.mktemp("scaleout"), postgres_admin_url)
    _CHAOS.append(c)   # the terminal summary writes its rows with the chaos session's
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_two_engine_instances_split_the_partitions_on_three_replicas(scaleout: ScaleOut) -> None:
    ids = scaleout.transactional_ids()
    assert len(set(ids.values())) == 2, ids
    got = scaleout.assignment()
    assert got is not None and set(got) == set(ENGINES) and scaleout.split(), got
    settings = scaleout.settings
    assert settings is not None
    for topic in ("ticks", "metrics", "alerts", "alerts-engine.changelog"):
        assert scaleout.cluster.replication(settings.topic(topic)) == {3}, topic
    for internal in ("__consumer_offsets", "__transaction_state"):
        assert scaleout.cluster.replication(internal) == {3}, internal


def strike_engine(c: ScaleOut, fault: str, facts: dict[str, Any]) -> Strike:
    """Catch the instance owning the round's partition inside a transaction holding alerts, SIGKILL
    it; keep it down until the other instance has the partition and has committed it through the
    round's last tick; start it again."""
    assert c.stack is not None and c.settings is not None
    rnd = c.rounds[fault]
    ticks, alerts = c.settings.topic("ticks"), c.settings.topic("alerts")
    p = c.partition_of(rnd.symbol)
    got = wait_for(c.assignment, 60, "the engine group's assignment")
    owner = next(name for name, parts in got.items() if p in parts)
    other = next(name for name in ENGINES if name != owner)
    look: KafkaLook = facts["look"]
    c.wait_receipts(fault, strikes.UNDER_WAY)

    pending, steps = catch(c.stack, owner, strikes.in_transaction(look, alerts))
    facts["open"], facts["owner"], facts["other"] = sum(pending.values()), owner, other
    from_offset = c.committed(ticks).get(p, 0)
    strike = Strike(f"alert engine {ENGINES[owner]} (1 of 2)",
                    "inside a transaction: alerts produced, not committed; kept down until the other took over",
                    f"{facts['open']} alerts past the last stable offset (caught in {steps} steps)")
    c.stack.kill(owner)
    killed = time.monotonic()

    def supervise_others() -> None:
        # a platform restarts a crashed dyno (conftest's supervise), all but the one kept down here
        assert c.stack is not None
        for name, proc in list(c.stack.procs.items()):
            if name != owner and not proc.alive():
                c.restarted.append(name)
                c.restart(name)

    def taken_over() -> bool:
        supervise_others()
        got = c.assignment()
        return got is not None and owner not in got and p in got.get(other, set())

    wait_for(taken_over, 60, f"ticks partition {p} to move to {ENGINES[other]}", interval_s=0.2)
    moved_s = time.monotonic() - killed

    def committed_through() -> bool:
        supervise_others()
        try:
            return c.committed(ticks).get(p, -1) >= int(facts["ticks_end"])
        except KafkaException:
            return False

    wait_for(committed_through, 150, f"{ENGINES[other]} to commit ticks partition {p} through the round",
             interval_s=0.2)
    assert not c.stack.procs[owner].alive()
    facts["from"], facts["moved_s"] = from_offset, moved_s
    strike.busy += (f"; ticks partition {p} went to {ENGINES[other]} {moved_s:.0f} s later, which committed it from "
                    f"offset {from_offset} through {facts['ticks_end']} before {ENGINES[owner]} started again")
    c.restart(owner)
    return strike


def test_sigkill_one_of_two_engines_the_other_takes_its_partition(scaleout: ScaleOut) -> None:
    c, fault = scaleout, ENGINE_ROW
    assert c.settings is not None
    rnd = c.rounds[fault]
    ticks, alerts = c.settings.topic("ticks"), c.settings.topic("alerts")
    look = KafkaLook(c.kafka.bootstrap)
    p = c.partition_of(rnd.symbol)
    # nothing else writes ticks during the round: the partition ends with its last tick here
    facts: dict[str, Any] = {"look": look, "topic": alerts, "before": strikes.aborted_alerts(look, alerts),
                             "ticks_end": look.ends(ticks, committed=True)[p] + len(rnd.ticks())}
    strike, t = c.run_round(fault, lambda: strike_engine(c, fault, facts))
    assert strike is not None and facts["open"] > 0
    # the killed transaction was aborted: read_committed never sees what it held
    aborted = strikes.engine_aborted(facts)
    assert aborted >= facts["open"], (aborted, facts["open"])
    assert facts["from"] < facts["ticks_end"], facts   # the other instance had ticks of the round left to do
    strike.busy += f"; {aborted} aborted (read_uncommitted minus read_committed)"
    check(c, fault, strike, t)
    # the restarted instance is back in the group with a share of the partitions
    wait_for(c.split, 90, "the restarted engine to rejoin and take a share", interval_s=0.5)


def strike_broker(c: ScaleOut, fault: str, facts: dict[str, Any]) -> Strike:
    """SIGKILL the broker leading the round's alerts partition mid-round; 10 s later start it again."""
    assert c.settings is not None
    rnd = c.rounds[fault]
    ticks, metrics, alerts = (c.settings.topic(n) for n in ("ticks", "metrics", "alerts"))
    used = {(ticks, c.partition_of(rnd.symbol)), (metrics, c.partition_of(rnd.symbol)),
            (alerts, c.partition_of(str(rnd.price_rule))), (alerts, c.partition_of(str(rnd.close_rule)))}
    target = (alerts, c.partition_of(str(rnd.price_rule)))
    c.wait_receipts(fault, strikes.UNDER_WAY)
    pending = scenario.count(rnd, c.receivers.got()).lost
    node = c.cluster.leader(*target)
    led = sorted(f"{topic.rsplit('.', 1)[-1]} {p}" for topic, p in used if c.cluster.leader(topic, p) == node)
    strike = Strike(f"Kafka broker {node} (1 of 3)", f"SIGKILL mid-round, started again {BROKER_DOWN_S} s later",
                    f"leader of {', '.join(led)}; {pending} notifications owed, not yet received")
    c.cluster.kill(node)
    killed = time.monotonic()
    hold(BROKER_DOWN_S)
    facts["node"], facts["target"], facts["pending"] = node, target, pending

    def led_by_another() -> int | None:
        leader = c.cluster.leader(*target)
        return leader if leader not in (node, -1) else None

    # kept down until the cluster has moved the partition's leadership (its session ends at 9 s,
    # and the metadata can say so a little later): then it started again
    facts["leader_meanwhile"] = wait_for(led_by_another, 30, f"a replica other than {node} to lead {target}",
                                         interval_s=0.5)
    c.cluster.start_node(node)
    strike.busy += f"; serving again {time.monotonic() - killed:.0f} s after the kill"
    return strike


def test_kafka_broker_killed_one_of_three(scaleout: ScaleOut) -> None:
    c, fault, facts = scaleout, BROKER_ROW, dict[str, Any]()
    strike, t = c.run_round(fault, lambda: strike_broker(c, fault, facts))
    assert strike is not None and facts["pending"] > 0, facts
    # the cluster went on without it: another replica led the round's partition meanwhile
    assert facts["leader_meanwhile"] not in (facts["node"], -1), facts
    # every process rode it out in place: nothing exited
    assert c.restarted == [], c.restarted
    check(c, fault, strike, t)
    node, target = facts["node"], facts["target"]
    wait_for(lambda: node in c.cluster.in_sync(*target), 60, f"broker {node} back in sync on {target}")
