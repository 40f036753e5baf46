"""A broker loss must not wedge a transaction on its way to the group coordinator (librdkafka#5511).

On a three-node cluster (``tests.chaos.cluster``): a consume-transform-produce loop on the
pipeline's own :class:`~events.pipeline_txn.Transaction` commits its first batch. Then the broker
that coordinates its consumer group is SIGKILLed. Once the producer has dropped that broker from
its metadata (librdkafka decommissions it, but its coordinator cache keeps it), the next batch's
``send_offsets_to_transaction`` must go to the new coordinator within seconds. Without
``Transaction``'s idle close (``IDLE_CLOSE_MS``) it waited for the dead broker for good: here for
the whole 170 s a run was given, in the three-broker fault row for 125 s, until the watchdog's exit.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from events.kafka import consumer_config
from events.pipeline_txn import IDLE_CLOSE_MS, Transaction
from events.settings import Settings, load_settings
from tests.chaos.cluster import KafkaCluster
from tests.support import wait_for

INPUT, OUTPUT = "coord.in", "coord.out"
#: the new coordinator is elected once the dead broker's session ends (KRaft's 9 s) and the
#: producer's idle close re-checks the wait within IDLE_CLOSE_MS; beyond this the call is wedged
BOUND_S = IDLE_CLOSE_MS / 1000 + 15


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    c = KafkaCluster(tmp_path_factory.mktemp("coord-cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def consume(consumer: Consumer, n: int, timeout_s: float = 60) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"consumed {len(got)} of {n}"
        got += [m for m in consumer.consume(n - len(got), 1.0) if m.error() is None]
    return got


def batch(txn: Transaction, consumer: Consumer, msgs: list[Message]) -> None:
    """The pipeline's commit step for one batch: outputs and consumed offsets in one transaction."""
    txn.begin()
    for m in msgs:
        txn.produce(OUTPUT, m.key(), m.value())
    txn.send_offsets({(m.topic() or "", m.partition() or 0): m.offset() or 0 for m in msgs}, consumer)
    txn.commit()


def feed(source: Producer, start: int, n: int) -> None:
    for i in range(start, start + n):
        source.produce(INPUT, str(i).encode(), key=str(i).encode())
    assert source.flush(30) == 0


def test_a_batch_after_the_group_coordinator_died_commits_at_the_new_one(cluster: KafkaCluster) -> None:
    settings: Settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap})
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for f in admin.create_topics([NewTopic(INPUT, 3, 3), NewTopic(OUTPUT, 3, 3)]).values():
        f.result(30)
    group = f"coord-{uuid.uuid4().hex[:8]}"
    source = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    # a static member, as the engine is; its session outlives the coordinator's move (about 10 s
    # here): at the pipeline's 10 s a static member that times out first rejoins fenced by its own
    # instance id (a fatal error the engine meets by starting over), which is not what is tested here
    consumer = Consumer(consumer_config(settings, group, **{"group.instance.id": f"{group}-1",
                                                            "session.timeout.ms": 30_000}))
    consumer.subscribe([INPUT])
    txn = Transaction(settings, f"{group}-txn")
    txn.init()
    feed(source, 0, 30)
    batch(txn, consumer, consume(consumer, 30))

    node = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15).coordinator.id
    cluster.kill(node)
    killed = time.monotonic()
    # the condition of the hang: the producer has decommissioned the broker its cache still names
    wait_for(lambda: node not in txn.producer.list_topics(timeout=10).brokers, 60,
             f"the producer dropping broker {node} from its metadata", interval_s=0.5)
    dropped_s = time.monotonic() - killed
    feed(source, 30, 10)
    msgs = consume(consumer, 10)

    done = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            batch(txn, consumer, msgs)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            done.set()

    started = time.monotonic()
    threading.Thread(target=second, daemon=True, name="second-batch").start()
    finished = done.wait(BOUND_S)
    took = time.monotonic() - started
    assert finished, (f"the batch after broker {node} (the group coordinator) died was still blocked after "
                      f"{took:.0f} s (dropped from metadata {dropped_s:.0f} s after the kill)")
    assert not errors, errors

    # both batches committed: 40 outputs for read_committed readers, the group's offsets past all 40
    reader = Consumer(consumer_config(settings, f"{group}-reader"))
    reader.subscribe([OUTPUT])
    try:
        assert sorted(int(m.value() or b"-1") for m in consume(reader, 40)) == list(range(40))
    finally:
        reader.close()
    committed = consumer.committed(consumer.assignment(), timeout=30)
    assert sum(tp.offset for tp in committed if tp.offset > 0) == 40, committed
    consumer.close()
