"""The alert engine measured as it ships: the Procfile's ``alerts`` command (``python -m alerts engine``).

Started through tests/e2e/stack.py (the Procfile line, its own settings, only
the topic prefix, consumer group and transactional id given), so batch size,
poll timeout and transaction cadence are the shipped ones.

* Capacity: a backlog of ticks produced before the engine starts; ticks/s is
  the growth of the engine group's committed offset from its first commit to
  the end of the backlog (rule loading and start-up excluded).
* Sustained rates: ticks paced at each rate for ``PACED_S`` after a warm-up;
  the group's lag sampled each 0.25 s must not grow; tick -> alert latency is
  each firing alert's arrival on ``alerts`` (read_committed) minus the moment
  its triggering tick was produced, p50/p99 with n. Then, in the same process,
  the highest sustained rate by search (bench/search.py: doubling, then
  bisection, a bounded number of runs).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import msgspec
from confluent_kafka import Consumer, TopicPartition

from bench.common import percentiles
from bench.search import SearchPlan, search
from events import contract
from events.kafka import EventProducer, consumer_config
from events.settings import Settings
from tests.e2e.stack import Stack

BACKLOG_TICKS = 300_000
PACED_RATES = (10_000, 20_000)
PACED_S = 10.0
WARMUP_S = 2.0
SEARCH_PLAN = SearchPlan(start=5000, floor=1000, top=160_000, max_probes=6, resolution=0.15)
TickSource = Callable[[int], contract.Tick]  # ts ms -> the next tick


def start_engine(settings: Settings, workdir: Path, rules: list[contract.Rule]) -> tuple[Stack, str]:
    """Produce the rules, then start the Procfile's engine on this prefix; (stack, its consumer group)."""
    producer = EventProducer(settings)
    for r in rules:
        producer.produce(r)
    producer.flush()
    group = f"bench-engine-{uuid.uuid4().hex[:8]}"
    stack = Stack.create(workdir, settings.kafka_topic_prefix, KAFKA_PARTITIONS=str(settings.kafka_partitions),
                         KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers, ALERTS_ENGINE_GROUP=group,
                         ALERTS_TRANSACTIONAL_ID=f"bench-{uuid.uuid4().hex[:8]}", LOG_LEVEL="INFO")
    stack.start("alerts")
    return stack, group


class Offsets:
    """The engine group's committed offsets on ``ticks`` and the topic's end."""

    def __init__(self, settings: Settings, group: str) -> None:
        self.topic = settings.topic("ticks")
        self.parts = [TopicPartition(self.topic, p) for p in range(settings.kafka_partitions)]
        self.probe = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})

    def committed(self) -> int:
        return sum(max(tp.offset, 0) for tp in self.probe.committed(self.parts, timeout=5))

    def end(self) -> int:
        return sum(self.probe.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in self.parts)

    def close(self) -> None:
        self.probe.close()


def capacity(settings: Settings, workdir: Path, rules: list[contract.Rule], ticks: TickSource,
             n: int = BACKLOG_TICKS) -> dict[str, Any]:
    """Ticks/s of the engine process through a backlog of ``n`` ticks (first commit -> all committed)."""
    producer = EventProducer(settings)
    now = int(time.time() * 1000)
    for i in range(n):
        producer.produce(ticks(now + i // 50))
    producer.flush()
    stack, group = start_engine(settings, workdir, rules)
    offsets = Offsets(settings, group)
    end = offsets.end()
    first: tuple[float, int] | None = None
    last: tuple[float, int] = (time.monotonic(), 0)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and last[1] < end:
            if not stack.procs["alerts"].alive():
                raise RuntimeError(f"the engine exited:\n{stack.procs['alerts'].tail()}")
            done = offsets.committed()
            now_s = time.monotonic()
            if done > 0 and first is None:
                first = (now_s, done)
            last = (now_s, done)
            time.sleep(0.1)  # sampling another process's progress
    finally:
        offsets.close()
        stack.stop_all()
    if first is None or last[0] <= first[0]:
        return {"ticks": n, "consumed": last[1], "ticks_per_s": None}
    return {"ticks": n, "consumed": last[1], "measured_ticks": last[1] - first[1],
            "seconds": round(last[0] - first[0], 2), "ticks_per_s": round((last[1] - first[1]) / (last[0] - first[0]))}


def sustained(settings: Settings, workdir: Path, rules: list[contract.Rule], ticks: TickSource,
              rates: tuple[int, ...] = PACED_RATES, plan: SearchPlan = SEARCH_PLAN) -> dict[str, Any]:
    """One engine process: each of ``rates`` in turn, then the highest sustained rate by search."""
    stack, group = start_engine(settings, workdir, rules)
    sent: dict[str, tuple[float, int]] = {}
    latencies: dict[int, list[float]] = {}
    done = threading.Event()
    reader = threading.Thread(target=read_alerts, args=(settings, sent, latencies, done), daemon=True)
    reader.start()
    producer = EventProducer(settings)
    offsets = Offsets(settings, group)
    runs: list[dict[str, Any]] = []

    def run(rate: int) -> dict[str, Any]:
        label = len(runs)
        latencies[label] = []
        drain_deadline = time.monotonic() + 30
        while offsets.end() - offsets.committed() > 100 and time.monotonic() < drain_deadline:
            time.sleep(0.2)  # the previous run's backlog drains before this one starts
        pace(producer, ticks, rate, WARMUP_S, None, sent, offsets)  # first transactions per partition: not measured
        lag: list[tuple[float, int]] = []
        produced, elapsed = pace(producer, ticks, rate, PACED_S, label, sent, offsets, lag)
        settle = time.monotonic() + 10
        count = -1
        while time.monotonic() < settle and len(latencies[label]) != count:
            count = len(latencies[label])
            time.sleep(1.0)  # the last alerts in flight
        half = lag[len(lag) // 2:]
        grew = (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0]) if len(half) > 1 else None
        result = {"offered_ticks_per_s": rate, "achieved_ticks_per_s": round(produced / elapsed),
                  "ticks": produced, "lag_max": max((v for _, v in lag), default=None),
                  "lag_at_end": lag[-1][1] if lag else None,
                  "lag_growth_per_s_second_half": round(grew, 1) if grew is not None else None,
                  "sustained": bool(grew is not None and grew < 0.02 * rate and lag[-1][1] <= rate
                                    and produced / elapsed >= 0.95 * rate),
                  "latency_ms": {k: round(v, 2) if isinstance(v, float) else v
                                 for k, v in percentiles(latencies[label]).items()}}
        runs.append(result)
        return result

    try:
        wait_consuming(stack, offsets, producer, ticks)
        fixed = [run(rate) for rate in rates]
        searched_from = len(runs)
        outcome = search(lambda rate: bool(run(rate)["sustained"]), plan)
    finally:
        done.set()
        reader.join(5)
        offsets.close()
        stack.stop_all()
    return {"fixed": fixed, "search": {**outcome.as_dict(), "plan": vars(plan), "runs": runs[searched_from:]}}


def wait_consuming(stack: Stack, offsets: Offsets, producer: EventProducer, ticks: TickSource) -> None:
    """Until the engine's group has committed a first offset (rules loaded, partitions assigned)."""
    producer.produce(ticks(int(time.time() * 1000)))
    producer.flush()
    deadline = time.monotonic() + 90
    while offsets.committed() <= 0:
        if time.monotonic() > deadline or not stack.procs["alerts"].alive():
            raise RuntimeError(f"the engine did not start consuming:\n{stack.procs['alerts'].tail()}")
        time.sleep(0.2)  # waiting on another process


def pace(producer: EventProducer, ticks: TickSource, rate: int, seconds: float, label: int | None,
         sent: dict[str, tuple[float, int]], offsets: Offsets,
         lag: list[tuple[float, int]] | None = None) -> tuple[int, float]:
    """``rate`` ticks/s in 10 ms slices for ``seconds``; lag sampled each 0.25 s when ``lag`` is given."""
    chunk = max(1, rate // 100)
    start = time.perf_counter()
    produced = 0
    for step in range(int(seconds * 100)):
        delay = start + step / 100 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the offered load
        now_ms = int(time.time() * 1000)
        for _ in range(chunk):
            t = ticks(now_ms)
            if label is not None:
                sent[t.id] = (time.perf_counter(), label)
            producer.produce(t)
        produced += chunk
        if lag is not None and step % 25 == 24:
            lag.append((time.perf_counter(), offsets.end() - offsets.committed()))
    producer.flush()
    return produced, time.perf_counter() - start


def read_alerts(settings: Settings, sent: dict[str, tuple[float, int]], latencies: dict[int, list[float]],
                done: threading.Event) -> None:
    consumer = Consumer(consumer_config(settings, f"bench-reader-{uuid.uuid4().hex}", **{"fetch.wait.max.ms": 2}))
    consumer.subscribe([settings.topic("alerts")])
    decoder = msgspec.json.Decoder(contract.Alert)
    try:
        while not done.is_set():
            first = consumer.poll(0.05)  # returns at the first message (consume() would wait out its timeout)
            if first is None:
                continue
            for m in [first, *consumer.consume(1000, 0)]:
                if m.error() is None:
                    now = time.perf_counter()
                    a = decoder.decode(m.value() or b"")
                    hit = sent.get(a.trigger_event_id)
                    if hit is not None and a.state == "firing":
                        latencies[hit[1]].append((now - hit[0]) * 1000)
    finally:
        consumer.close()
