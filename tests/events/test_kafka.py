"""The Kafka backbone against the real broker: every topic, the DLQ, restart without loss."""

from __future__ import annotations

import os
from dataclasses import replace
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from events import contract
from events.contract import Alert, Bar, Condition, Prediction, Rule, Tick, decode, encode
from events.kafka import EventProducer, StreamRunner, TopicSpec, admin_client, ensure_topics, topic_specs
from events.settings import Settings
from tests.events.test_contract import EXAMPLES, tick
from tests.support import read_topic, topic_size

ROOT = Path(__file__).resolve().parents[2]


def test_topics_exist_with_partitions_and_policies(kafka_settings: Settings) -> None:
    from confluent_kafka.admin._config import ConfigResource  # the package re-exports it without __all__

    from events.kafka import admin_client

    admin = admin_client(kafka_settings)
    meta = admin.list_topics(timeout=10).topics
    for spec in topic_specs(kafka_settings):
        assert spec.name in meta, spec.name
        assert len(meta[spec.name].partitions) == spec.partitions
    res = ConfigResource(ConfigResource.Type.TOPIC, kafka_settings.topic("rules"))
    config = admin.describe_configs([res])[res].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
    assert ensure_topics(kafka_settings) == []  # idempotent


def test_every_event_type_through_its_topic(kafka_settings: Settings) -> None:
    producer = EventProducer(kafka_settings)
    for event in EXAMPLES:
        producer.produce(event)
    producer.flush()
    for event in EXAMPLES:
        name = contract.topic_of(event)
        [msg] = read_topic(kafka_settings, kafka_settings.topic(name), expect=1)
        assert msg.key() == event.key
        assert decode(msg.value(), type(event)) == event


def test_same_symbol_lands_on_one_partition_in_order(kafka_settings: Settings) -> None:
    producer = EventProducer(kafka_settings)
    for seq in range(1, 201):
        sym = "AAPL" if seq % 2 else "MSFT"
        producer.produce(tick(id=f"sim:{sym}:{seq}", symbol=sym, seq=seq))
    producer.flush()
    msgs = read_topic(kafka_settings, kafka_settings.topic("ticks"), expect=200)
    by_symbol: dict[str, list[tuple[int, int]]] = {}
    for m in msgs:
        t = decode(m.value(), Tick)
        by_symbol.setdefault(t.symbol, []).append((m.partition(), t.seq))
    for sym, seen in by_symbol.items():
        assert len({p for p, _ in seen}) == 1, f"{sym} spread over partitions"
        seqs = [s for _, s in seen]
        assert seqs == sorted(seqs)


def java_partition(key: bytes, partitions: int) -> int:
    """Where the Java client (Spark's Kafka sink among them) puts a keyed record: Kafka's
    murmur2 of the key bytes, made positive, modulo the partition count. Written here from the
    algorithm, independently of the producer under test."""
    m, r = 0x5BD1E995, 24
    length = len(key)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = key[length - length % 4:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def test_symbols_land_where_java_clients_put_them(kafka_settings: Settings) -> None:
    """Co-partitioning: `ticks` and `predictions` (Python) and `metrics` (Spark, Java) put a symbol
    in the same partition number, which is what lets the rule engine scale out."""
    settings = replace(kafka_settings, kafka_partitions=6)
    ensure_topics(settings, [TopicSpec(settings.topic("ticks6"), 6, {})])
    producer = EventProducer(settings)
    symbols = [f"S{i}" for i in range(60)] + ["AAPL", "BRK.B", "^GSPC", "BTC-USD"]
    for i, sym in enumerate(symbols):
        producer.produce_bytes(settings.topic("ticks6"), sym.encode(), encode(tick(id=f"sim:{sym}:1", symbol=sym)))
    producer.flush()
    msgs = read_topic(settings, settings.topic("ticks6"), expect=len(symbols))
    got = {(m.key() or b"").decode(): m.partition() for m in msgs}
    assert got == {sym: java_partition(sym.encode(), 6) for sym in symbols}
    assert len(set(got.values())) == 6
    admin_client(settings).delete_topics([settings.topic("ticks6")], operation_timeout=10)


def test_malformed_messages_go_to_the_dlq_and_the_consumer_carries_on(kafka_settings: Settings) -> None:
    producer = EventProducer(kafka_settings)
    topic = kafka_settings.topic("ticks")
    good = [tick(id=f"sim:AAPL:{i}", seq=i) for i in range(1, 6)]
    bad = [b"not json", encode(tick()).replace(b'"price":150.25', b'"price":"x"'), b'{"type":"tick"}']
    producer.produce(good[0])
    for raw in bad:
        producer.produce_bytes(topic, b"AAPL", raw)
    for t in good[1:]:
        producer.produce(t)
    producer.flush()

    runner = StreamRunner(kafka_settings, "g-dlq", {topic: Tick}, lambda batch: [d.event for d in batch],
                          output_topic=lambda _e: kafka_settings.topic("ticks.copy"))
    ensure_topics(kafka_settings, [TopicSpec(kafka_settings.topic("ticks.copy"), 1)])
    deadline = time.monotonic() + 30
    while runner.stats.consumed < len(good) + len(bad) and time.monotonic() < deadline:
        runner.run_once()
    runner.close()
    assert runner.stats.dlq == 3 and runner.stats.dlq_by_topic[topic] == 3
    copied = [decode(m.value(), Tick) for m in read_topic(kafka_settings, kafka_settings.topic("ticks.copy"), expect=5)]
    assert sorted(t.seq for t in copied) == [1, 2, 3, 4, 5]
    dead = read_topic(kafka_settings, topic + ".dlq", expect=3)
    assert sorted(m.value() for m in dead) == sorted(bad)
    reasons = [dict(m.headers())["dlq.error"].decode() for m in dead]
    assert any("$.price" in r for r in reasons), reasons
    assert all(dict(m.headers())["dlq.topic"].decode() == topic for m in dead)


def committed(settings: Settings, group: str, topic: str, partitions: int) -> int:
    c = Consumer({**settings.kafka_common(), "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def test_consumer_killed_mid_stream_resumes_without_loss(kafka_settings: Settings) -> None:
    n = 3000
    ensure_topics(kafka_settings, [TopicSpec(kafka_settings.topic("ticks.copy"), 1)])
    producer = EventProducer(kafka_settings)

    def produce(first: int, last: int) -> None:
        for i in range(first, last + 1):
            producer.produce(tick(id=f"sim:S{i % 7}:{i}", symbol=f"S{i % 7}", seq=i))
        producer.flush()

    produce(1, n // 2)  # the second half arrives while the stage is down
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.events.echo_stage", kafka_settings.kafka_topic_prefix, "g-kill", "50"]
    group_topic = kafka_settings.topic("ticks")

    first = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while committed(kafka_settings, "g-kill", group_topic, 2) < n // 4:
        assert time.monotonic() < deadline, "echo stage made no progress"
        assert first.poll() is None
        time.sleep(0.1)  # polling the committed offset, bounded by the deadline
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    produce(n // 2 + 1, n)

    second = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while committed(kafka_settings, "g-kill", group_topic, 2) < n:
            assert time.monotonic() < deadline, "restarted stage did not catch up"
            time.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=20)
    assert second.returncode == 0 and "stopped" in out  # SIGTERM drained and closed cleanly
    copy_topic = kafka_settings.topic("ticks.copy")
    copies = read_topic(kafka_settings, copy_topic, expect=topic_size(kafka_settings, copy_topic))
    ids = [decode(m.value(), Tick).id for m in copies]
    assert set(ids) == {f"sim:S{i % 7}:{i}" for i in range(1, n + 1)}  # nothing lost
    assert len(ids) - len(set(ids)) <= 50 * 2  # at most the uncommitted batches are replayed
