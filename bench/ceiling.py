"""The bare-Kafka ceiling beside the end-to-end probes: confluent-kafka alone, same conditions.

Same broker, same partition count, same tick messages and keys, the same
producer settings as the probes' tick producer (``producer_config(settings)``,
which ``EventProducer`` and so ``ingest`` use) and a read_committed consumer
as the stack's. bench/e2e.py runs it right after each probe, while the stack's
processes are up, so it sees the machine as the probes do.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from bench.common import percentiles
from bench.e2e_stack import N_SYMBOLS, PARTITIONS, Walk
from events.kafka import admin_client, consumer_config, producer_config
from events.settings import Settings

WHAT = ("bare confluent-kafka on the same broker: the same tick messages over 1,000 symbols, the producer settings of "
        f"the probes' tick producer (idempotent, acks=all, lz4, linger 5 ms), {PARTITIONS} partitions, a "
        "read_committed consumer; run right after each probe with the stack's processes up")


def create_topic(settings: Settings) -> str:
    topic = settings.topic("ceiling")
    admin = admin_client(settings)  # held until the futures resolve (a collected client cancels them)
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result(30)
    return topic


def messages(count: int) -> list[tuple[bytes, bytes]]:
    walk = Walk(seed=11)
    now_ms = int(time.time() * 1000)
    enc = msgspec.json.Encoder()
    return [(t.symbol.encode(), enc.encode(t)) for _, t in (walk.next(N_SYMBOLS, now_ms) for _ in range(count))]


def round_trip(settings: Settings, topic: str, values: list[tuple[bytes, bytes]],
               rate: int | None) -> dict[str, Any]:
    """Produce ``values`` (unpaced, or paced at ``rate``/s in 10 ms slices) and consume them back."""
    count = len(values)
    consumer = Consumer(consumer_config(settings, f"bench-ceiling-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 5}))
    consumer.assign([TopicPartition(topic, p, -1) for p in range(PARTITIONS)])  # from the end: only new messages
    consumer.poll(0.5)
    received = 0
    latencies: list[float] = []
    done = threading.Event()
    last = [0.0]

    def read() -> None:
        nonlocal received
        while not done.is_set() and received < count:
            for m in consumer.consume(5000, 0.1):
                if m.error() is None:
                    now = time.time()
                    received += 1
                    latencies.append(now * 1000 - m.timestamp()[1])
                    last[0] = now
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = Producer(producer_config(settings))
    start = time.time()
    if rate is None:
        for key, value in values:
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
    else:
        chunk = max(1, rate // 100)
        for k in range((count + chunk - 1) // chunk):
            delay = start + k / 100 - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing the offered load
            for key, value in values[k * chunk:(k + 1) * chunk]:
                producer.produce(topic, value, key)
            producer.poll(0)
    producer.flush(30)
    produced_s = time.time() - start
    done.wait(30)
    done.set()
    reader.join(5)
    consumer.close()
    stats = percentiles(latencies)
    out: dict[str, Any] = {
        "messages": count, "received": received, "produce_msgs_per_s": round(count / produced_s),
        "round_trip_msgs_per_s": round(received / (last[0] - start)) if last[0] > start else None,
        "latency_ms": {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()}}
    if rate:
        out["offered_msgs_per_s"] = rate
    return out


def measure(settings: Settings, topic: str, unpaced: list[tuple[bytes, bytes]], paced_rate: int,
            paced_s: float) -> dict[str, Any]:
    """One ceiling sample: the unpaced round trip, then a paced run at the probe's rate (latency)."""
    began = time.time()
    out: dict[str, Any] = {"unpaced": round_trip(settings, topic, unpaced, None)}
    out["paced"] = round_trip(settings, topic, unpaced[:max(1, int(paced_rate * paced_s))], paced_rate)
    out["seconds"] = round(time.time() - began, 1)
    return out
