"""Ingest throughput against a bare confluent-kafka produce loop on the same broker, same run.

Three alternating rounds each of: (a) a bare loop producing the same pre-encoded
tick messages with the same producer settings; (b) ``python -m ingest --source
sim --rate 0`` as its own process (its own reported rate: generation, sequencing,
encoding and produce up to the final flush). The figure is the median ratio.
Also the per-tick decode+validate cost of the contract's hot path.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

from confluent_kafka import Producer

from bench.common import bench_topics, write_result
from events.contract import Tick, decode, encode
from events.kafka import producer_config
from ingest.base import Sequencer
from ingest.sim import SimSource

ROOT = Path(__file__).resolve().parent.parent
N = 300_000
ROUNDS = 3


def bare_rate(settings, messages: list[tuple[bytes, bytes]]) -> float:  # type: ignore[no-untyped-def]
    producer = Producer(producer_config(settings))
    topic = settings.topic("ticks")
    start = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    return len(messages) / (time.perf_counter() - start)


def ingest_rate(settings) -> float:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix}
    out = subprocess.run([sys.executable, "-m", "ingest", "--source", "sim", "--rate", "0", "--count", str(N)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    m = re.search(r"ingest: (\d+) ticks in ([\d.]+) s", out.stderr)
    assert m and int(m.group(1)) == N, out.stderr
    return N / float(m.group(2))


def main() -> dict:
    seq = Sequencer("sim", dedupe=False)
    raws = SimSource(seed=7).next_batch(N)
    events = [e for e in (seq.to_event(r) for r in raws) if e is not None]
    messages = [(e.key, encode(e)) for e in events]
    sample = messages[0][1]
    decode_us = min(timeit.repeat(lambda: decode(sample, Tick), number=100_000, repeat=5)) / 100_000 * 1e6
    encode_us = min(timeit.repeat(lambda: encode(events[0]), number=100_000, repeat=5)) / 100_000 * 1e6
    bare, ingest = [], []
    with bench_topics() as settings:
        for _ in range(ROUNDS):
            bare.append(bare_rate(settings, messages))
            ingest.append(ingest_rate(settings))
    ratios = [i / b for i, b in zip(ingest, bare)]
    return write_result("ingest", {
        "ticks_per_round": N, "rounds": ROUNDS, "symbols": 20,
        "ingest_ticks_per_s": [round(x) for x in ingest],
        "bare_produce_ticks_per_s": [round(x) for x in bare],
        "ratio_ingest_to_bare_median": round(statistics.median(ratios), 3),
        "ingest_ticks_per_s_median": round(statistics.median(ingest)),
        "decode_validate_tick_us": round(decode_us, 3),
        "encode_tick_us": round(encode_us, 3),
        "producer": "enable.idempotence, acks=all, lz4, linger.ms=5 (both loops)",
        "aims": {"ratio": 0.5, "ingest_ticks_per_s": 50_000},
    })


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
