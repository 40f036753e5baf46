"""``python -m stream`` as its own process: bars flow, SIGTERM stops it cleanly (exit 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from events.settings import ROOT
from stream.config import StreamSettings
from tests.stream.helpers import BASE_MS, make_ticks, produce_ticks, read_bars

pytestmark = pytest.mark.slow


def test_sigterm_stops_the_process_gracefully(stream_cfg: StreamSettings, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYSPARK_PYTHON": sys.executable,
        "KAFKA_TOPIC_PREFIX": stream_cfg.base.kafka_topic_prefix,
        "TICKERBELL_VAR": str(tmp_path / "var"),
        "BAR_SECONDS": "1",
        "STREAM_LATENESS_MS": "500",
        "STREAM_TRIGGER_MS": "200",
        "STREAM_SHARDS": "4",
        "SPARK_MASTER": "local[2]",
    }
    data = make_ticks(["AAA"], range(0, 5)) + [{"symbol": "ZZZ", "ts": BASE_MS + 60_000, "price": 1.0, "size": 1.0}]
    produce_ticks(stream_cfg, data)
    log = (tmp_path / "stream.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "stream"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        bars = read_bars(replace(stream_cfg), expect=5, timeout_s=120)  # the process is up and working
        assert [b.start_ms - BASE_MS for b in sorted(bars, key=lambda b: b.start_ms)] == [0, 1000, 2000, 3000, 4000]
        assert (tmp_path / "var" / "spark" / "stream" / "commits").is_dir()  # default checkpoint under var/
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        assert time.monotonic() - started < 60
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log.seek(0)
    output = log.read()
    assert rc == 0, output[-3000:]
    assert "stopping: finishing the micro-batch in flight" in output and "stopped;" in output
