"""Structured JSON logs and Prometheus metrics, shared by every process.

``setup_logging`` makes every log line one JSON object (time, level, logger,
process, message, and any ``extra=`` fields such as ``event_id``).
``serve_metrics`` exposes the process's Prometheus registry on
``METRICS_PORT`` (0 = off). The counters below are updated by
:class:`events.kafka.StreamRunner`, so every stage built on it reports
events in/out, DLQ, errors, batch latency, consumer lag and event time.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_IN = Counter("tickerbell_events_in_total", "Messages consumed", ["process", "topic"])
EVENTS_OUT = Counter("tickerbell_events_out_total", "Events produced", ["process", "topic"])
DLQ = Counter("tickerbell_dlq_total", "Messages sent to a dead-letter topic", ["process", "topic"])
ERRORS = Counter("tickerbell_errors_total",
                 "Warnings and errors logged, by level and logger (a retry, a refused input, a failed send...)",
                 ["process", "kind"])
BATCH_SECONDS = Histogram(
    "tickerbell_batch_seconds", "Time to process one consumed batch (decode to commit)", ["process"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMER_LAG = Gauge("tickerbell_consumer_lag", "Messages behind the end of the partition", ["process", "topic", "partition"])
LAST_EVENT_TS = Gauge("tickerbell_last_event_timestamp_seconds", "Event time of the newest event seen", ["process"])

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


class ErrorCounter(logging.Handler):
    """Counts every warning and error a process logs in ``tickerbell_errors_total``: the code
    already logs each retry, refusal and failure once, so the metric needs no call site of its own."""

    def __init__(self, process: str) -> None:
        super().__init__(level=logging.WARNING)
        self.process = process

    def emit(self, record: logging.LogRecord) -> None:
        ERRORS.labels(self.process, f"{record.levelname.lower()}:{record.name}").inc()


def setup_logging(process: str, level: str = "INFO", json_logs: bool = True) -> None:
    """Configure the root logger once for a process (JSON lines on stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process) if json_logs else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._tickerbell = True  # type: ignore[attr-defined]
    counter = ErrorCounter(process)
    counter._tickerbell = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    # replace only our own handlers (a second call), leave others (e.g. pytest's capture) in place
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_tickerbell", False)] + [handler, counter]
    root.setLevel(level)


def serve_metrics(port: int, host: str = "0.0.0.0") -> bool:
    """Expose /metrics on ``port``; returns False when disabled (port 0)."""
    if port <= 0:
        return False
    start_http_server(port, addr=host)
    return True
