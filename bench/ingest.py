"""Ingest throughput against a bare confluent-kafka produce loop on the same broker, same run;
and how fast a newly watched symbol starts flowing.

Three alternating rounds each of: (a) a bare loop producing the same pre-encoded
tick messages with the same producer settings; (b) ``python -m ingest --source
sim --rate 0`` as its own process (its own reported rate: generation, sequencing,
encoding and produce up to the final flush). The figure is the median ratio.
Also the per-tick decode+validate cost of the contract's hot path.

Watch to first tick: a SQLite database, the outbox relay and ``run_ingest`` following demand
(simulated source with its simulated backfill) run in threads; each of ``WATCH_SAMPLES``
symbols is added to a watchlist and committed, one after the other, and the time from the
commit to that symbol's first tick read back from ``ticks`` is one sample (it includes the
relay's poll, ingest's demand poll, the backfill's produce and flush, and the consumer).

Backfill throughput: the Spark job (its own session settings) running; ``BACKFILL_SYMBOLS`` x
``HISTORY_BARS`` simulated history bars produced to ``history`` as ingest produces them; bars
per second from the first produced until the last one is read back from ``metrics``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.common import bench_topics, percentiles, write_result
from events.contract import Tick, decode, encode
from events.kafka import producer_config
from events.settings import Settings
from ingest.base import Sequencer
from ingest.sim import SimSource

ROOT = Path(__file__).resolve().parent.parent
N = 300_000
ROUNDS = 3
WATCH_SAMPLES = 200
HISTORY_BARS = 300
BACKFILL_SYMBOLS = 200


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
    out = subprocess.run([sys.executable, "-m", "ingest", "--source", "sim", "--fixed", "--rate", "0",
                          "--count", str(N)],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    m = re.search(r"ingest: (\d+) ticks in ([\d.]+) s", out.stderr)
    assert m and int(m.group(1)) == N, out.stderr
    return N / float(m.group(2))


def watch_to_first_tick(settings: Settings, tmp: Path) -> dict[str, Any]:
    import threading
    import uuid
    from dataclasses import replace

    from confluent_kafka import Consumer

    from events import models
    from events.db import session_factory, upgrade
    from events.kafka import EventProducer, ShutdownFlag
    from events.outbox import run_relay
    from ingest.demand import DemandFollower
    from ingest.history import simulated_history
    from ingest.runner import run_ingest

    url = f"sqlite:///{tmp / 'watch.db'}"
    upgrade(url)
    settings = replace(settings, database_url=url)
    sessions = session_factory(settings)
    with sessions() as s:
        user = models.User(email="bench@example.com", password_hash="-")
        s.add(user)
        s.flush()
        wl = models.Watchlist(user_id=user.id, name="bench")
        s.add(wl)
        s.commit()
        wl_id = wl.id
    shutdown = ShutdownFlag()
    history = (lambda sym, end_ms: simulated_history(sym, bar_seconds=settings.bar_seconds, end_ms=end_ms,
                                                     n_bars=HISTORY_BARS))
    demand = DemandFollower(settings)
    ingest_report: list[Any] = []
    threads = [
        threading.Thread(target=run_relay, args=(settings, sessions, shutdown), daemon=True),
        threading.Thread(target=lambda: ingest_report.append(run_ingest(
            SimSource([], seed=7), EventProducer(settings), shutdown, rate=2000, demand=demand, history=history)),
            daemon=True),
    ]
    for t in threads:
        t.start()
    tail = Consumer({**settings.kafka_common(), "group.id": f"bench-{uuid.uuid4().hex}",
                     "auto.offset.reset": "latest", "enable.auto.commit": False})
    tail.subscribe([settings.topic("ticks")])
    latencies: list[float] = []
    try:
        tail.consume(1, 2.0)  # joined and positioned before the first sample
        for i in range(WATCH_SAMPLES):
            symbol = f"W{i:04d}"
            with sessions() as s:
                s.add(models.WatchlistSymbol(watchlist_id=wl_id, symbol=symbol, position=i))
                started = time.perf_counter()
                s.commit()
            deadline = started + 30
            seen = False
            while not seen and time.perf_counter() < deadline:
                for m in tail.consume(1000, 0.05):
                    if m.error() is None and m.key() == symbol.encode():
                        seen = True
                        break
            assert seen, f"{symbol}: no tick within 30 s of watching it"
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        shutdown.set()
        for t in threads:
            t.join(30)
        tail.close()
        demand.close()
    report = ingest_report[0]
    stats = percentiles(latencies)
    return {"samples": stats["n"], "p50_ms": round(stats["p50"], 1), "p99_ms": round(stats["p99"], 1),
            "max_ms": round(stats["max"], 1), "history_bars_per_symbol": HISTORY_BARS,
            "history_bars_published": report.history_bars,
            "path": "commit (watchlist symbol) -> outbox relay -> watched -> ingest demand poll -> backfill "
                    "produced and flushed -> first live tick -> read back from ticks"}


def backfill_throughput(settings: Settings, workdir: Path) -> dict[str, Any]:
    import uuid
    from dataclasses import replace

    from confluent_kafka import Consumer

    from events.contract import Bar
    from events.kafka import EventProducer
    from ingest.history import simulated_history
    from stream.config import load_stream_settings
    from stream.job import build_session, start_query
    from stream.runner import stop_gracefully, wait_s

    cfg = replace(load_stream_settings(), base=settings, checkpoint_dir=workdir / "ckpt",
                  query_name="bench-backfill")
    spark = build_session(cfg)
    query = start_query(spark, cfg)
    reader = Consumer({**settings.kafka_common(), "group.id": f"bench-{uuid.uuid4().hex}",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    reader.subscribe([settings.topic("metrics")])
    try:
        producer = EventProducer(settings)
        end_ms = int(time.time() * 1000)
        warm = simulated_history("WARM", bar_seconds=settings.bar_seconds, end_ms=end_ms, n_bars=30)
        for bar in warm:
            producer.produce(bar)
        producer.flush()
        seen = 0
        deadline = time.monotonic() + 180
        while seen < len(warm):  # the first batch starts the Python workers and the state store
            assert time.monotonic() < deadline, "the job did not fold the warm-up history"
            seen += sum(1 for m in reader.consume(1000, 0.2) if m.error() is None)
            wait_s(query, 0.05)
        total = BACKFILL_SYMBOLS * HISTORY_BARS
        started = time.perf_counter()
        for i in range(BACKFILL_SYMBOLS):
            for bar in simulated_history(f"B{i:04d}", bar_seconds=settings.bar_seconds, end_ms=end_ms,
                                         n_bars=HISTORY_BARS):
                producer.produce(bar)
        producer.flush()
        produced_s = time.perf_counter() - started
        got = 0
        deadline = time.monotonic() + 600
        while got < total and time.monotonic() < deadline:
            for m in reader.consume(5000, 0.2):
                if m.error() is None and decode(m.value(), Bar).history:
                    got += 1
        elapsed = time.perf_counter() - started
        assert got >= total, f"only {got} of {total} history bars reached metrics"
    finally:
        reader.close()
        stop_gracefully(query)
        spark.stop()
    return {"symbols": BACKFILL_SYMBOLS, "bars_per_symbol": HISTORY_BARS, "history_bars": total,
            "produce_s": round(produced_s, 2), "elapsed_s": round(elapsed, 2),
            "bars_per_s": round(total / elapsed), "bar_seconds": settings.bar_seconds,
            "path": "simulated history produced to history -> Spark job (fold + indicators) -> metrics, read back"}


def main() -> dict[str, Any]:
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
        with tempfile.TemporaryDirectory() as tmp:
            watch = watch_to_first_tick(settings, Path(tmp))
    with bench_topics() as settings, tempfile.TemporaryDirectory() as tmp:
        backfill = backfill_throughput(settings, Path(tmp))
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
        "watch_to_first_tick": watch,
        "backfill_through_spark": backfill,
        "aims": {"ratio": 0.5, "ingest_ticks_per_s": 50_000, "watch_to_first_tick_p99_ms": 5000},
    })


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
