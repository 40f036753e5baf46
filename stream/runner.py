"""The process around the query: start, report progress, stop on the shutdown flag."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from pyspark.errors import StreamingQueryException
from pyspark.sql.streaming.query import StreamingQuery

from events.kafka import ShutdownFlag
from events.settings import redact_url
from stream.config import StreamSettings
from stream.job import build_session, start_query

log = logging.getLogger("stream")

__all__ = ["ProgressTotals", "run", "stop_gracefully", "wait_s"]


def wait_s(query: StreamingQuery, seconds: float) -> bool:
    """Block up to ``seconds`` (fractions allowed) for the query to end; True if it has ended."""
    try:
        return bool(query.awaitTermination(seconds))  # type: ignore[arg-type]  # floats work
    except StreamingQueryException:
        return True


class ProgressTotals:
    """Running totals over the query's progress reports (each batch counted once)."""

    def __init__(self) -> None:
        self.last_batch_id = -1
        self.totals: Counter[str] = Counter()
        self.last: dict[str, Any] = {}
        self._seen: set[tuple[str, int, str]] = set()

    def update(self, query: StreamingQuery) -> None:
        # A batch id can be reported twice (an empty report, then the real one), so a
        # report is identified by run, batch and timestamp.
        recent = list(query.recentProgress)
        for p in recent:
            ident = (p["runId"], p["batchId"], p["timestamp"])
            if ident in self._seen:
                continue
            self._seen.add(ident)
            self.last_batch_id = p["batchId"]
            self.totals["ticks"] += int(p.get("numInputRows") or 0)
            observed = (p.get("observedMetrics") or {}).get("stream")
            if observed is not None:  # a Row
                values = observed.asDict() if hasattr(observed, "asDict") else dict(observed)
                for name in ("bars", "history", "history_dropped", "late", "invalid"):
                    self.totals[name] += int(values.get(name) or 0)
            self.last = p
        if len(self._seen) > 1000:  # recentProgress keeps the last 100 reports
            self._seen = {(p["runId"], p["batchId"], p["timestamp"]) for p in recent}

    def line(self) -> str:
        p = self.last
        return (f"batch {self.last_batch_id}: inputs {self.totals['ticks']} bars {self.totals['bars']} "
                f"(history {self.totals['history']}, {self.totals['history_dropped']} covered ones dropped) "
                f"late {self.totals['late']} invalid {self.totals['invalid']}; "
                f"in {p.get('inputRowsPerSecond', 0):.0f}/s processed {p.get('processedRowsPerSecond', 0):.0f}/s "
                f"batch {(p.get('durationMs') or {}).get('triggerExecution', 0)} ms "
                f"watermark {(p.get('eventTime') or {}).get('watermark', '-')}")


def stop_gracefully(query: StreamingQuery, timeout_s: float = 30.0) -> None:
    """Let the micro-batch in flight finish (up to ``timeout_s``), then stop the query."""
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        wait_s(query, 0.1)
    query.stop()


def run(cfg: StreamSettings, shutdown: ShutdownFlag, *, report_every_s: float = 10.0) -> int:
    """Run the job until ``shutdown`` is set or the query dies; return the exit status.

    Heroku and honcho send SIGTERM to the whole process group, so Spark's JVM may go
    down at the same moment as this process is asked to stop: errors from the gateway
    after the stop was requested are a clean stop (the checkpoint holds offsets and
    state; the batch in flight is replayed with the same bar ids on the next start).
    """
    try:
        return _run(cfg, shutdown, report_every_s)
    except Exception as exc:
        if not shutdown.is_set():
            raise
        log.info("stopped while Spark's JVM went down with the process group (%s); state is in the checkpoint",
                 type(exc).__name__)
        return 0


def _run(cfg: StreamSettings, shutdown: ShutdownFlag, report_every_s: float) -> int:
    log.info("ticks %s + history %s -> metrics %s, bars %d s, lateness %d ms, master %s, checkpoint %s, kafka %s",
             cfg.ticks_topic, cfg.history_topic, cfg.metrics_topic, cfg.bar_seconds, cfg.lateness_ms, cfg.master,
             cfg.checkpoint_dir, redact_url(cfg.base.kafka_bootstrap_servers))
    spark = build_session(cfg)
    query = start_query(spark, cfg)
    progress = ProgressTotals()
    next_report = time.monotonic() + report_every_s
    try:
        while not shutdown.is_set() and query.isActive:
            wait_s(query, 0.5)
            if time.monotonic() >= next_report:
                progress.update(query)
                log.info("%s", progress.line())
                next_report = time.monotonic() + report_every_s
    finally:
        if query.isActive:
            log.info("stopping: finishing the micro-batch in flight")
            stop_gracefully(query)
        progress.update(query)
        log.info("stopped; %s", progress.line())
        error = query.exception()
        spark.stop()
    if error is not None and not shutdown.is_set():
        log.error("query failed: %s", error)
        return 1
    if error is not None:  # the same clean stop as in run(), reported by the query instead of raised
        log.info("stopped while Spark's JVM went down with the process group (%s); state is in the checkpoint",
                 type(error).__name__)
    return 0
