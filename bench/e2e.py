"""End-to-end benchmark of the running stack (``make bench`` -> bench/results/e2e.json, profiles.json).

One stack of real Procfile processes (tests/e2e/stack.py: its own topic
prefix, SQLite database, var folder and Celery queue): ``stream`` (Spark,
1-second bars, 500 ms lateness), ``alerts`` (engine), ``dispatch``,
``worker``, ``bridge``, ``projector``, ``relay`` and ``web`` (the Procfile's
gunicorn line). ``ingest`` is replaced by a paced producer with ingest's own
producer settings, so the offered rate is known; ``predict`` is left out
(TensorFlow would take a core of the two this machine has, and no measured
path goes through it). Load and observers: bench/e2e_stack.py.

The headline is the highest sustained rate over 1,000 symbols and 10,000 rules
at which EVERY path meets its aim (bench/search.py: bar close -> metrics p99
< 2 s, tick -> alert p99 < 50 ms, tick -> webhook p99 < 250 ms, tick ->
browser p99 < 250 ms), found by doubling then bisection over a bounded number
of probes. A probe runs at one rate until every path has at least ``MIN_N``
samples (at least ``PROBE_MIN_S``, at most ``PROBE_MAX_S``), then settles
(a trickle of unmeasured ticks until the engine's lag is back to zero and the
probe's last bars are out); it passes when the producer reached the rate, the
engine's lag did not grow, and every path's p99 met its aim with n >= MIN_N.
Each probe reports every path's p50/p99 with n and its verdict, and CPU and
RSS per process. Right after each probe, with the stack still up, the
bare-Kafka ceiling is measured (bench/ceiling.py: same producer settings,
partitions, messages and broker). Finally one probe at 5,000 ticks/s is run
with every process profiled (bench/profile.py: py-spy, and JFR for Spark's
JVM); its self-time tables go to bench/results/profiles.json.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from bench import ceiling
from bench.common import percentiles, write_result
from bench.e2e_stack import (BAR_SECONDS, COOLDOWN_S, FIRING_SYMBOLS, LATENESS_MS, N_SYMBOLS, PARTITIONS, PROCESSES,
                             ROOM_SYMBOLS, RULES_PER_SYMBOL, WARMUP, Book, Walk, connect_browser, make_rules,
                             produce, read_alerts, read_metrics, sample_lag, seed_database, start_receiver,
                             web_healthy)
from bench.profile import ProcSampler, profile_processes, service_roots, usage
from bench.search import AIMS_P99_MS, SearchPlan, judge, search
from events.kafka import EventProducer, admin_client
from events.settings import Settings, load_settings
from tests.e2e.stack import Stack, free_port, procfile, wait_for

COMMAND = "PYTHONPATH=. .venv/bin/python -m bench e2e"
MIN_N = 300              # samples per path before a probe's p99 counts
PROBE_MIN_S = 30.0       # also >= 30 bar closes per probe
PROBE_MAX_S = 120.0
SETTLE_MAX_S = 120.0
IDLE_RATE = 200          # unmeasured ticks/s while settling (bars close only when later ticks arrive)
CEILING_MSGS = 100_000
CEILING_PACED_S = 3.0
WARM_UP_MAX_S = 420.0   # Spark's first micro-batch takes minutes on a busy 2-core machine
PROFILE_RATE = 5000
PROFILE_S = 30.0
PY_SPY_HZ = 50
PLAN = SearchPlan(start=1000, floor=250, top=64000, max_probes=8, resolution=0.15)
PATHS = {"alert": "tick_to_alert", "webhook": "tick_to_webhook", "browser": "tick_to_browser",
         "bar": "bar_close_to_metrics"}


@dataclass
class Bench:
    """Everything one run shares: the stack, the observers' book, the producer, the ceiling topic."""

    settings: Settings
    stack: Stack
    book: Book
    producer: EventProducer
    walk: Walk
    sampler: ProcSampler
    ceiling_topic: str
    ceiling_values: list[tuple[bytes, bytes]]
    unsettled: bool = False  # the last probe's backlog had not drained when its settling time ran out


def rnd(stats: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()}


def lag_summary(samples: list[tuple[float, int]], rate: int, t_end: float) -> dict[str, Any]:
    during = [(t, lag) for t, lag in samples if t <= t_end + 0.5]
    if len(during) < 3:
        return {"samples": len(during)}
    half = during[len(during) // 2:]
    n = len(half)
    mt = sum(t for t, _ in half) / n
    ml = sum(lag for _, lag in half) / n
    den = sum((t - mt) ** 2 for t, _ in half) or 1.0
    slope = sum((t - mt) * (lag - ml) for t, lag in half) / den
    return {"samples": len(during), "max": max(lag for _, lag in during), "at_end": during[-1][1],
            "slope_msgs_per_s_second_half": round(slope, 1)}


def settle(b: Bench, rate: int, t_end: float) -> tuple[float, bool]:
    """Trickle unmeasured ticks until the engine's lag is drained and the probe's bars are out.

    Returns the seconds taken and whether it settled (False: SETTLE_MAX_S ran out, and the next
    probe starts with a backlog, which its ``after_unsettled`` flag says).
    """
    book = b.book
    book.probe = WARMUP
    done = [False]

    def settled(elapsed: float) -> bool:
        recent = [lag for _, t, lag in book.lag if t > t_end + 1]
        bars_out = book.newest_bar_end_ms >= int(t_end * 1000) - LATENESS_MS - BAR_SECONDS * 1000
        done[0] = elapsed >= 3 and bars_out and bool(recent) and recent[-1] <= max(50, rate // 100)
        return done[0] or elapsed >= SETTLE_MAX_S

    produce(b.producer, b.walk, book, IDLE_RATE, WARMUP, settled)
    return round(time.time() - t_end, 1), done[0]


def latencies(book: Book, probe: int) -> dict[str, dict[str, float]]:
    alerts = {aid: (t0, t1) for aid, (t0, t1, p) in list(book.alerts.items()) if p == probe}
    bars = [(ms, end) for p, ms, _, end in book.bars if p == probe]
    slowest: dict[int, float] = {}
    for ms, end in bars:
        slowest[end] = max(ms, slowest.get(end, 0.0))
    return {
        "tick_to_alert": rnd(percentiles([(t1 - t0) * 1000 for t0, t1 in alerts.values()])),
        "tick_to_webhook": rnd(percentiles([(book.hooks[aid] - t0) * 1000 for aid, (t0, _) in alerts.items()
                                            if aid in book.hooks])),
        "tick_to_browser": rnd(percentiles([v for p, v in book.socket if p == probe])),
        "bar_close_to_metrics": rnd(percentiles([ms for ms, _ in bars])),
        "bar_close_to_metrics_slowest_bar_per_close": rnd(percentiles(list(slowest.values()))),
        "bar_end_to_metrics": rnd(percentiles([v for p, _, v, _ in book.bars if p == probe])),
    }


def run_probe(b: Bench, probe: int, rate: int, during: Callable[[], object] | None = None) -> dict[str, Any]:
    """The stack at ``rate`` ticks/s until every path has MIN_N samples; then settle and judge."""
    book = b.book
    load_before = os.getloadavg()[0]
    after_unsettled = b.unsettled
    book.probe = probe
    b.sampler.reset_peaks()
    before = b.sampler.sample()
    worker = threading.Thread(target=during, daemon=True) if during else None
    if worker:
        worker.start()

    def enough(elapsed: float) -> bool:
        if worker and worker.is_alive():
            return False
        if elapsed >= PROBE_MAX_S:
            return True
        return elapsed >= PROBE_MIN_S and all(book.counts[(probe, path)] >= MIN_N for path in PATHS)

    produced, elapsed = produce(b.producer, b.walk, book, rate, probe, enough)
    t_end = time.time()
    after = b.sampler.sample()
    peaks = dict(b.sampler.peak)
    settle_s, settled = settle(b, rate, t_end)
    b.unsettled = not settled
    lag = lag_summary([(t, lag) for p, t, lag in book.lag if p == probe], rate, t_end)
    achieved = produced / elapsed
    slope = lag.get("slope_msgs_per_s_second_half")
    engine_kept_up = bool(slope is not None and slope < 0.02 * rate and lag.get("at_end", 1e12) <= rate)
    lat = latencies(book, probe)
    verdict = judge(lat, MIN_N)
    passed = bool(achieved >= 0.95 * rate and engine_kept_up and all(v["met"] for v in verdict.values()))
    fired = sum(1 for *_, p in list(book.alerts.values()) if p == probe)
    closes = lat["bar_close_to_metrics_slowest_bar_per_close"].get("n", 0)
    return {
        "probe": probe, "symbols": N_SYMBOLS, "offered_ticks_per_s": rate, "achieved_ticks_per_s": round(achieved),
        "ticks": produced, "seconds": round(elapsed, 1), "settle_s": settle_s, "settled": settled,
        "after_unsettled": after_unsettled, "engine_kept_up": engine_kept_up,
        "engine_lag": lag, "alerts_fired": fired, "bar_closes": closes, "latency_ms": lat, "aims": verdict,
        "passed": passed, "processes": usage(before, after, peaks),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


class StackBroke(RuntimeError):
    """A stack process exited during a probe: later probes would measure a different stack."""


def probe_and_ceiling(b: Bench, probes: list[dict[str, Any]]) -> Callable[[int], bool]:
    def probe(rate: int) -> bool:
        n = len(probes)
        print(f"   probe {n}: {rate} ticks/s over {N_SYMBOLS} symbols", flush=True)
        result = run_probe(b, n, rate)
        exited = [name for name, proc in b.stack.procs.items() if not proc.alive()]
        if exited:
            result["exited"] = exited
            probes.append(result)
            raise StackBroke(f"{', '.join(exited)} exited during probe {n} ({rate} ticks/s): "
                             + " | ".join(b.stack.procs[name].tail(5) for name in exited))
        result["ceiling"] = ceiling.measure(b.settings, b.ceiling_topic, b.ceiling_values, rate, CEILING_PACED_S)
        b.book.forget(n)
        probes.append(result)
        failed = [k for k, v in result["aims"].items() if not v["met"]]
        print(f"   probe {n}: {'passed' if result['passed'] else 'failed'} "
              f"(achieved {result['achieved_ticks_per_s']}/s, engine kept up {result['engine_kept_up']}, "
              f"aims missed: {', '.join(failed) or 'none'})", flush=True)
        return bool(result["passed"])
    return probe


def start_stack(workdir: Path, prefix: str, web_port: int, group: str) -> Stack:
    return Stack.create(
        workdir, prefix, KAFKA_PARTITIONS=str(PARTITIONS), ALLOW_PRIVATE_WEBHOOKS="true",
        BAR_SECONDS=str(BAR_SECONDS), STREAM_LATENESS_MS=str(LATENESS_MS), ALERTS_STALE_AFTER_S="0",
        ALERTS_ENGINE_GROUP=group, ALERTS_DISPATCH_GROUP=f"{prefix}dispatch",
        ALERTS_TRANSACTIONAL_ID=f"{prefix}engine", LOG_LEVEL="WARNING", PORT=str(web_port),
        SMTP_URL=f"smtp://127.0.0.1:{free_port()}")


def warm_up(b: Bench) -> int:
    """Until every path has carried something; seconds taken.

    A trickle until the first bar is out (Spark starts slowest, and its first micro-batch reads every tick
    produced before it), then 1,000 ticks/s for at least 10 s.
    """
    book = b.book
    started = time.monotonic()
    deadline = started + WARM_UP_MAX_S

    def ready(elapsed: float, rate: int) -> bool:
        for name, proc in b.stack.procs.items():
            if not proc.alive():
                raise RuntimeError(f"{name} exited during warm-up:\n{proc.tail()}")
        paths = bool(book.alert_events and book.hooks and book.bars and book.socket_updates)
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up did not complete: alerts={book.alert_events} hooks={len(book.hooks)} "
                               f"bars={len(book.bars)} socket updates={book.socket_updates}")
        return bool(book.bars) if rate == IDLE_RATE else paths and elapsed >= 10

    produce(b.producer, b.walk, book, IDLE_RATE, WARMUP, lambda elapsed: ready(elapsed, IDLE_RATE))
    produce(b.producer, b.walk, book, 1000, WARMUP, lambda elapsed: ready(elapsed, 1000))
    return round(time.monotonic() - started)


def main(rates: list[int] | None = None) -> dict[str, Any]:
    """The search (or, with ``rates``, one probe at each: a quick check of the harness), then the profile."""
    rates = rates or [int(r) for r in os.environ.get("BENCH_E2E_RATES", "").split(",") if r.strip()]
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    prefix = f"bench-e2e-{uuid.uuid4().hex[:6]}."
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    web_port = free_port()
    group = f"{prefix}engine"
    stack = start_stack(workdir, prefix, web_port, group)
    settings = replace(load_settings(), kafka_topic_prefix=prefix, kafka_partitions=PARTITIONS)
    book = Book()
    stop = threading.Event()
    server = start_receiver(book)
    threads: list[threading.Thread] = []
    client = None
    results: dict[str, Any] = {}
    probes: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    try:
        release = stack.run(procfile()["release"], timeout_s=180)
        if release.returncode != 0:
            raise RuntimeError(f"release failed: {release.stderr[-2000:]}")
        user_id, channel_id, token = seed_database(stack.env["DATABASE_URL"], server.server_address[1])
        rule_producer = EventProducer(settings)
        for r in make_rules(channel_id, user_id):
            rule_producer.produce(r)
        rule_producer.flush()
        for name in PROCESSES:
            stack.start(name)
        roots = {name: p.popen.pid for name, p in stack.procs.items() if p.popen is not None}
        sampler = ProcSampler({**roots, **service_roots()})  # the services' cores too; profiled: the stack's
        for target, args in ((read_alerts, (settings, book, stop)), (read_metrics, (settings, book, stop)),
                             (sample_lag, (settings, group, book, stop, sampler.sample))):
            threads.append(threading.Thread(target=target, args=args, daemon=True))
            threads[-1].start()
        wait_for(lambda: web_healthy(web_port), 90, "the web app's /healthz")
        client = connect_browser(web_port, token, book)
        b = Bench(settings, stack, book, EventProducer(settings), Walk(), sampler, ceiling.create_topic(settings),
                  ceiling.messages(CEILING_MSGS))
        results["warm_up_s"] = warm_up(b)
        probe = probe_and_ceiling(b, probes)
        try:
            if rates:
                for rate in rates:
                    probe(rate)
                results["search"] = {"fixed_rates": rates, "best_ticks_per_s": max(
                    (p["offered_ticks_per_s"] for p in probes if p["passed"]), default=None)}
            else:
                outcome = search(probe, PLAN)
                results["search"] = {**outcome.as_dict(), "plan": vars(PLAN)}
        except StackBroke as exc:  # keep what was measured, say why it stopped, and do not profile a broken stack
            results["search"] = {"aborted": str(exc)[:2000], "best_ticks_per_s": None}
        if "aborted" not in results["search"]:
            print(f"   profile: {PROFILE_RATE} ticks/s, every process for {PROFILE_S:.0f} s", flush=True)
            n = len(probes)
            holder: dict[str, Any] = {}

            def record() -> None:
                time.sleep(3)  # let the step reach its rate before sampling
                try:
                    holder.update(profile_processes(roots, PROFILE_S, PY_SPY_HZ, workdir / "profiles"))
                except Exception as exc:  # noqa: BLE001 - the probe's own figures still count; say why
                    holder["error"] = f"{type(exc).__name__}: {exc}"

            profile = {"step": run_probe(b, n, PROFILE_RATE, during=record), **holder}
            book.forget(n)
        results["browser"] = {"transport": client.transport(), "connects": book.socket_connects,
                              "updates": book.socket_updates, "disconnects": book.socket_disconnects[:10]}
        results["exited"] = [name for name, proc in stack.procs.items() if not proc.alive()]
    finally:
        stop.set()
        book.probe = WARMUP
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - teardown only
                pass
        stack.stop_all()
        for t in threads:
            t.join(10)
        server.shutdown()
        cleanup(settings, stack)
    results["probes"] = probes
    results.update(headline(results["search"].get("best_ticks_per_s"), probes))
    results["aims_p99_ms"] = AIMS_P99_MS
    results["setup"] = {
        "processes": PROCESSES, "partitions": PARTITIONS, "symbols": N_SYMBOLS, "rules": N_SYMBOLS * RULES_PER_SYMBOL,
        "firing_rules": FIRING_SYMBOLS * 3, "firing_rule_cooldown_s": COOLDOWN_S, "bar_seconds": BAR_SECONDS,
        "lateness_ms": LATENESS_MS, "min_samples_per_path": MIN_N, "probe_s": [PROBE_MIN_S, PROBE_MAX_S],
        "settle_max_s": SETTLE_MAX_S, "browser_rooms": ROOM_SYMBOLS, "ceiling": ceiling.WHAT,
        "left_out": "ingest (replaced by the paced producer), predict (TensorFlow; no measured path goes through it)",
    }
    results["load_avg_1m"] = {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)}
    results["seconds_total"] = round(time.monotonic() - started)
    results["logs"] = str(workdir)
    if profile:
        write_result("profiles", {"rate_ticks_per_s": PROFILE_RATE, "py_spy_hz": PY_SPY_HZ, **profile},
                     command=COMMAND)
    return write_result("e2e", results, command=COMMAND)


def headline(best: int | None, probes: list[dict[str, Any]]) -> dict[str, Any]:
    ceilings = [p["ceiling"]["unpaced"]["round_trip_msgs_per_s"] for p in probes
                if p.get("ceiling", {}).get("unpaced", {}).get("round_trip_msgs_per_s")]
    ceiling_median = round(statistics.median(ceilings)) if ceilings else None
    return {"e2e_all_aims_ticks_per_s": best, "ceiling_round_trip_msgs_per_s_median": ceiling_median,
            "ceiling_round_trip_msgs_per_s_range": [min(ceilings), max(ceilings)] if ceilings else None,
            "ratio_e2e_to_ceiling": round(best / ceiling_median, 3) if best and ceiling_median else None}


def cleanup(settings: Settings, stack: Stack) -> None:
    admin = admin_client(settings)
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.kafka_topic_prefix)]
        if names:
            admin.delete_topics(names, operation_timeout=10)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    try:
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        keys = client.keys(f"*{stack.env['ALERTS_QUEUE']}*")
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    shutil.rmtree(stack.workdir / "var", ignore_errors=True)  # Spark checkpoint; the logs and profiles stay


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
