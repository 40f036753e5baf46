"""JSON log lines and the Prometheus endpoint every stream process exposes."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.request

from events.contract import Tick
from events.kafka import EventProducer, StreamRunner
from events.observability import ERRORS, ErrorCounter, JsonFormatter, serve_metrics
from events.settings import Settings
from tests.events.test_contract import tick


def test_log_lines_are_json_with_event_ids() -> None:
    record = logging.LogRecord("alerts.engine", logging.WARNING, __file__, 1, "fired %s", ("r1",), None)
    record.event_id = "alert:abc"
    line = json.loads(JsonFormatter("alerts").format(record))
    assert line["msg"] == "fired r1" and line["event_id"] == "alert:abc"
    assert line["level"] == "WARNING" and line["process"] == "alerts" and line["ts"].endswith("Z")


def test_every_warning_and_error_logged_is_counted_by_level_and_logger() -> None:
    log = logging.getLogger("tests.observability.counted")
    log.propagate = False
    log.addHandler(ErrorCounter("testproc"))
    before = {k: ERRORS.labels("testproc", k)._value.get() for k in ("warning:tests.observability.counted",
                                                                      "error:tests.observability.counted")}
    log.info("not counted")
    log.warning("a retry")
    log.warning("another retry")
    log.error("a failure")
    after = {k: ERRORS.labels("testproc", k)._value.get() for k in before}
    assert {k: after[k] - before[k] for k in before} == {"warning:tests.observability.counted": 2,
                                                         "error:tests.observability.counted": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runner_metrics_are_served(kafka_settings: Settings) -> None:
    producer = EventProducer(kafka_settings)
    for i in range(1, 11):
        producer.produce(tick(id=f"sim:AAPL:{i}", seq=i))
    producer.produce_bytes(kafka_settings.topic("ticks"), b"AAPL", b"junk")
    producer.flush()
    process = f"obs-{kafka_settings.kafka_topic_prefix.rstrip('.')}"
    runner = StreamRunner(kafka_settings, process, {kafka_settings.topic("ticks"): Tick}, lambda b: [], lag_every_s=0)
    deadline = time.monotonic() + 30
    while runner.stats.consumed < 11 and time.monotonic() < deadline:
        runner.run_once()
    runner.report_lag()
    runner.close()
    port = free_port()
    assert serve_metrics(port, "127.0.0.1") and not serve_metrics(0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    topic = kafka_settings.topic("ticks")
    assert f'tickerbell_events_in_total{{process="{process}",topic="{topic}"}} 11.0' in body
    assert f'tickerbell_dlq_total{{process="{process}",topic="{topic}"}} 1.0' in body
    assert f'tickerbell_batch_seconds_count{{process="{process}"}}' in body
    # caught up: the partition it read shows no lag (from the client's cached watermarks)
    import re
    lags = re.findall(rf'tickerbell_consumer_lag{{partition="\d+",process="{process}",topic="{re.escape(topic)}"}} (\S+)',
                      body)
    assert lags and all(float(v) == 0.0 for v in lags), [line for line in body.splitlines() if "lag" in line]
