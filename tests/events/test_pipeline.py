"""The one consumer pipeline (events.pipeline) against the real broker: DLQ, commit after the sink, back-off, shutdown."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from events import observability as obs
from events.contract import Tick, encode
from events.kafka import Backoff, EventProducer, ShutdownFlag, TopicSpec, ensure_topics
from events.pipeline import Decoded, Pipeline
from events.pipeline_read import partition_ends, reached, read_to_end
from events.settings import Settings
from tests.events.test_contract import tick
from tests.support import read_topic, topic_size, wait_for


class Away(ConnectionError):
    """The sink's downstream is unreachable (a recoverable error)."""


def committed(settings: Settings, group: str, topic: str) -> int:
    """Sum over partitions of the group's committed offsets of ``topic``."""
    c = Consumer({**settings.kafka_common(), "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(settings.kafka_partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def produce_ticks(settings: Settings, seqs: range, bad: tuple[bytes, ...] = ()) -> None:
    producer = EventProducer(settings)
    for i in seqs:
        producer.produce(tick(id=f"sim:AAPL:{i}", seq=i))
    for raw in bad:
        producer.produce_bytes(settings.topic("ticks"), b"AAPL", raw)
    producer.flush()


def seqs_of(batch: list[Decoded]) -> list[int]:
    return [d.event.seq for d in batch if isinstance(d.event, Tick)]


def test_malformed_messages_are_dead_lettered_once_with_the_reason_and_counted(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic("ticks")
    bad = [b"not json", encode(tick()).replace(b'"price":150.25', b'"price":"x"')]
    produce_ticks(kafka_settings, range(1, 4), tuple(bad))
    process = f"p-{uuid.uuid4().hex[:8]}"
    calls: list[list[int]] = []

    def sink(seqs: list[int]) -> None:
        calls.append(seqs)
        if len(calls) == 1:
            raise Away("first try fails")  # the DLQ must not be written twice for one retried batch

    pipeline: Pipeline[int] = Pipeline(kafka_settings, f"g-{uuid.uuid4().hex}", {topic: Tick}, seqs_of, sink,
                                       recoverable=(Away,), backoff=Backoff(first_s=0.01), process=process)
    try:
        wait_for(lambda: pipeline.run_once() >= 0 and pipeline.stats.consumed >= 5, what="all consumed")
    finally:
        pipeline.close()
    assert pipeline.stats.dlq == 2 and pipeline.stats.dlq_by_topic[topic] == 2
    assert obs.DLQ.labels(process, topic)._value.get() == 2
    assert sorted(s for c in calls[1:] for s in c) == [1, 2, 3]
    dead = read_topic(kafka_settings, topic + ".dlq", expect=2)
    assert sorted(m.value() for m in dead) == sorted(bad)
    headers = [dict(m.headers()) for m in dead]
    assert all(h["dlq.topic"].decode() == topic and h["dlq.error"] for h in headers)
    assert any("$.price" in h["dlq.error"].decode() for h in headers)
    assert topic_size(kafka_settings, topic + ".dlq") == 2, "a dead letter written twice"


def test_nothing_is_committed_before_the_sink_succeeds(kafka_settings: Settings) -> None:
    topic, group = kafka_settings.topic("ticks"), f"g-{uuid.uuid4().hex}"
    produce_ticks(kafka_settings, range(1, 6))
    failures = {"left": 3}
    written: list[int] = []

    def sink(seqs: list[int]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise Away("downstream away")
        written.extend(seqs)

    backoff = Backoff(first_s=0.01, max_s=0.05)
    pipeline: Pipeline[int] = Pipeline(kafka_settings, group, {topic: Tick}, seqs_of, sink, recoverable=(Away,),
                                       backoff=backoff)
    try:
        wait_for(lambda: pipeline.run_once() >= 0 and failures["left"] < 3, what="a first failed attempt")
        delays = []
        while failures["left"]:
            assert committed(kafka_settings, group, topic) == 0, "committed before the sink succeeded"
            delays.append(backoff.next_s)
            pipeline.run_once()
        assert delays == sorted(delays) and delays[-1] > delays[0], "no back-off between the retries"
        produce_ticks(kafka_settings, range(6, 9))  # arrives while the batch was held: read after it, once
        wait_for(lambda: pipeline.run_once() >= 0 and len(written) >= 8, what="the held batch, then the rest")
        assert committed(kafka_settings, group, topic) == 8
    finally:
        pipeline.close()
    assert sorted(written) == list(range(1, 9)), "a message lost or written twice"


def test_shutdown_finishes_the_batch_in_hand_and_commits_it(kafka_settings: Settings) -> None:
    topic, group = kafka_settings.topic("ticks"), f"g-{uuid.uuid4().hex}"
    out = kafka_settings.topic("ticks.copy")
    ensure_topics(kafka_settings, [TopicSpec(out, 1)])
    produce_ticks(kafka_settings, range(1, 21))
    shutdown = ShutdownFlag()
    steps: list[int] = []

    def step(batch: list[Decoded]) -> list[Tick]:
        steps.append(len(batch))
        shutdown.set()  # SIGTERM arrives while the batch is in hand
        return [d.event for d in batch if isinstance(d.event, Tick)]

    pipeline: Pipeline[Tick] = Pipeline(kafka_settings, group, {topic: Tick}, step, batch_size=1000,
                                        shutdown=shutdown, output_topic=lambda _e: out)
    stats = pipeline.run()
    assert len(steps) == 1 and stats.consumed == steps[0] > 0
    assert committed(kafka_settings, group, topic) == stats.consumed
    copied = read_topic(kafka_settings, out, expect=stats.consumed)
    assert len(copied) == stats.consumed


def test_read_to_end_and_reached(kafka_settings: Settings) -> None:
    topic = kafka_settings.topic("ticks")
    produce_ticks(kafka_settings, range(1, 8))
    ends: dict[int, int] = {}
    seen: list[bytes] = []
    assert read_to_end(kafka_settings, topic, lambda m: seen.append(m.value() or b""), ends=ends) == 7
    assert sum(ends.values()) == 7 and len(seen) == 7
    group = f"g-{uuid.uuid4().hex}"
    pipeline: Pipeline[int] = Pipeline(kafka_settings, group, {topic: Tick}, seqs_of, lambda _s: None)
    consumer = pipeline.consumer
    assert consumer is not None
    try:
        target = partition_ends(consumer, [topic])
        assert target == {(topic, p): e for p, e in ends.items()}
        assert not reached(consumer, target)
        wait_for(lambda: pipeline.run_once() >= 0 and reached(consumer, target), what="the group consumer at the ends")
        assert pipeline.stats.consumed == 7
    finally:
        pipeline.close()


def test_a_live_view_resumes_where_it_stopped_on_partitions_it_never_read(kafka_settings: Settings) -> None:
    """A live view (``auto.offset.reset=latest``) that stopped before any message reached one of its
    partitions must, restarted, read what arrived there meanwhile, not start at a later end."""
    topic, group = kafka_settings.topic("ticks"), f"g-{uuid.uuid4().hex}"
    produce_ticks(kafka_settings, range(1, 4))   # history: a new live view skips it
    got: list[int] = []

    def view() -> Pipeline[int]:
        return Pipeline(kafka_settings, group, {topic: Tick}, seqs_of, got.extend,
                        consumer_overrides={"auto.offset.reset": "latest"}, poll_timeout_s=0.1)

    first = view()
    try:
        wait_for(lambda: first.run_once() >= 0 and committed(kafka_settings, group, topic) == 3,
                 what="the partitions' ends pinned as the group's start")
    finally:
        first.close()   # down before any message reached it
    produce_ticks(kafka_settings, range(4, 7))   # arrives while the view is down
    second = view()
    try:
        wait_for(lambda: second.run_once() >= 0 and len(got) >= 3, what="what arrived while it was down")
    finally:
        second.close()
    assert sorted(got) == [4, 5, 6], got
    assert committed(kafka_settings, group, topic) == 6
