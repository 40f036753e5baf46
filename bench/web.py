"""Web stage benchmark: the bridge's coalescing and latency, the projector's throughput.

Bridge: 5 symbols ticking at about 5 000 ticks/s in total through Kafka, all
5 viewed; the bridge's Socket.IO emits are read off the Redis message-queue
channel (what every web worker receives). Reported: updates per second per
symbol (the target is at most about 10) and the tick-to-Redis latency.
Bridge, few viewed: 1 000 symbols ticking, of which a client watches 5 (the
benchmark writes the viewed set as a web process would): updates published
per second (the target: about 10 per viewed symbol, none for the others) and
the CPU seconds the bridge's thread spends per 10 000 ticks (its Python work;
librdkafka's own threads are not counted). Projector: bars per second upserted
into SQLite, committed before the offsets.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from typing import Any

import redis

from bench.common import bench_topics, percentiles, write_result
from events.contract import Bar, Tick, bar_id, tick_id
from events.db import session_factory, upgrade
from events.kafka import EventProducer, ShutdownFlag
from web.bridge import run_bridge
from web.projector import run_projector
from web.rooms import VIEWED_REFRESH_S, publish_viewed, viewed_key

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG"]


def bench_bridge(seconds: float = 6.0, rate_per_s: int = 5000, symbols: list[str] | None = None,
                 watched: list[str] | None = None) -> dict[str, Any]:
    """``symbols`` tick round robin at ``rate_per_s``; ``watched`` (default: all of them) are in the
    viewed set, as if a browser had joined their rooms."""
    symbols = symbols or SYMBOLS
    watched = symbols if watched is None else watched
    with bench_topics(partitions=2) as settings:
        channel = f"bench-{uuid.uuid4().hex[:8]}"
        prefix = f"bench:{channel}:"
        client = redis.Redis.from_url(settings.redis_url)
        sub = client.pubsub()  # type: ignore[no-untyped-call]
        sub.subscribe(channel)
        shutdown = ShutdownFlag()
        viewer = threading.Thread(target=_keep_viewed, args=(client, prefix, watched, shutdown), daemon=True)
        viewer.start()
        counts: dict[str, float] = {}

        def run() -> None:
            counts.update(run_bridge(settings, shutdown, channel=channel, group_id=f"bench-bridge-{uuid.uuid4().hex[:6]}",
                                     offset_reset="earliest", redis_prefix=prefix))
            counts["cpu_end_s"] = time.thread_time()

        bridge = threading.Thread(target=run, daemon=True)
        bridge.start()
        received: list[tuple[float, dict[str, Any]]] = []

        def listen() -> None:
            while not shutdown.is_set():
                msg = sub.get_message(timeout=0.2)
                if msg and msg["type"] == "message":
                    message = json.loads(msg["data"])
                    message["data"] = message["data"][0]  # emit args are a list; ours is one payload
                    received.append((time.time(), message))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert bridge.ident is not None
        bridge_clock = time.pthread_getcpuclockid(bridge.ident)
        try:
            cpu_before = time.clock_gettime(bridge_clock)  # after its start-up, before the first tick
            sent, elapsed, start = _produce(settings, received, shutdown, seconds, rate_per_s, symbols, watched)
        finally:
            shutdown.set()
            bridge.join(30)
            listener.join(5)
            viewer.join(5)
            sub.close()
            client.delete(viewed_key(prefix))
    summary = _summary(received, sent, seconds, elapsed, watched)
    consumed = int(counts.get("consumed", 0))
    cpu_s = counts.get("cpu_end_s", cpu_before) - cpu_before  # the tick stream, the catch-up and the final drain
    summary.update({"symbols": len(symbols), "symbols_viewed": len(watched), "bridge_consumed": consumed,
                    "bridge_cpu_s": round(cpu_s, 3),
                    "bridge_cpu_s_per_10k_ticks": round(cpu_s / max(1, consumed) * 10_000, 3)})
    return summary


def _keep_viewed(client: redis.Redis, prefix: str, watched: list[str], shutdown: ShutdownFlag) -> None:
    """What a web process with sockets in the ``watched`` rooms does: refresh their viewed entries."""
    while not shutdown.is_set():
        publish_viewed(client, prefix, watched, time.time())
        shutdown.wait(VIEWED_REFRESH_S)


def _produce(settings: Any, received: list[tuple[float, dict[str, Any]]], shutdown: ShutdownFlag, seconds: float,
             rate_per_s: int, symbols: list[str], watched: list[str]) -> tuple[int, float, float]:
    producer = EventProducer(settings)
    sent = 0
    start = time.time()
    while time.time() - start < seconds:
        batch_start = time.time()
        for _ in range(rate_per_s // 100):  # 10 ms slices
            symbol = symbols[sent % len(symbols)]
            now_ms = int(time.time() * 1000)
            producer.produce(Tick(id=tick_id("bench", symbol, sent), ts=now_ms, symbol=symbol,
                                  price=100 + (sent % 1000) / 100, size=1.0, source="bench", seq=sent))
            sent += 1
        producer.raw.poll(0)
        shutdown.wait(max(0.0, 0.01 - (time.time() - batch_start)))  # pacing to the target rate
    producer.flush()
    # wait until the last tick of each watched symbol has come through (each ticks once per round)
    last_round_ms = int(start * 1000 + seconds * 1000) - 50 - int(len(symbols) / rate_per_s * 1000)
    deadline = time.time() + 15
    while time.time() < deadline:
        last = {u["data"]["symbol"]: u["data"]["ts_ms"] for _, u in received if u.get("event") == "update"}
        if all(last.get(s, 0) >= last_round_ms for s in watched):
            break
        shutdown.wait(0.1)
    return sent, time.time() - start, start


def _summary(received: list[tuple[float, dict[str, Any]]], sent: int, seconds: float, elapsed: float,
             watched: list[str]) -> dict[str, Any]:
    per_second: dict[tuple[str, int], int] = defaultdict(int)
    latencies = []
    updated: set[str] = set()
    for at, msg in received:
        if msg.get("event") != "update":
            continue
        data = msg["data"]
        updated.add(data["symbol"])
        per_second[(data["symbol"], int(at))] += 1
        if data.get("ts_ms") and data["symbol"] in watched:
            latencies.append((at * 1000) - data["ts_ms"])
    updates = sum(1 for _, m in received if m.get("event") == "update")
    return {
        "ticks_sent": sent, "tick_rate_per_s": round(sent / seconds),
        "updates_emitted": updates, "updates_per_s": round(updates / elapsed, 1),
        "symbols_updated": len(updated), "symbols_updated_not_viewed": len(updated - set(watched)),
        "updates_per_symbol_per_s_mean": round(updates / max(1, len(updated)) / elapsed, 2),
        "updates_per_symbol_per_s_max": max(per_second.values(), default=0),
        "tick_to_redis_latency_ms": {k: round(v, 1) for k, v in percentiles(latencies).items()},
    }


def bench_bridge_few_viewed(seconds: float = 8.0, rate_per_s: int = 5000) -> dict[str, Any]:
    """1 000 symbols ticking, a client watching 5 of them."""
    many = [f"S{i:04d}" for i in range(1000)]
    return bench_bridge(seconds, rate_per_s, symbols=many, watched=many[:5])


def bench_projector(n_bars: int = 20_000) -> dict[str, Any]:
    with bench_topics(partitions=2) as settings, tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = replace(settings, database_url=url)
        producer = EventProducer(settings)
        t0 = 1_790_000_000_000
        for i in range(n_bars):
            symbol = SYMBOLS[i % len(SYMBOLS)]
            start = t0 + (i // len(SYMBOLS)) * 60_000
            producer.produce(Bar(id=bar_id(symbol, 60, start), ts=start + 60_000, symbol=symbol, start_ms=start,
                                 bar_seconds=60, open=100.0, high=101.0, low=99.0, close=100.5, volume=1000.0,
                                 count=10, vwap=100.2, sma_5=100.1, sma_20=100.0))
        producer.flush()
        shutdown = ShutdownFlag()
        done = [0]

        def on_batch(n: int) -> None:
            done[0] += n
            if done[0] >= n_bars:
                shutdown.set()

        guard = threading.Timer(120, shutdown.set)
        guard.start()
        started = time.monotonic()
        consumed = run_projector(settings, session_factory(settings), shutdown, group_id=f"bench-proj-{uuid.uuid4().hex[:6]}",
                                 on_batch=on_batch, redis_prefix="bench:")
        elapsed = time.monotonic() - started
        guard.cancel()
    return {"bars": consumed, "seconds_incl_group_join": round(elapsed, 2), "bars_per_s_sqlite": round(consumed / elapsed)}


def main() -> dict[str, Any]:
    return write_result("web", {"bridge": bench_bridge(), "bridge_1000_symbols_5_viewed": bench_bridge_few_viewed(),
                                "projector": bench_projector()},
                        command="PYTHONPATH=. .venv/bin/python -m bench web")


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
