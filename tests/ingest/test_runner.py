"""``python -m ingest`` into the real broker: every tick arrives, in order per symbol."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from events.contract import Tick, decode
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from ingest.runner import run_ingest
from ingest.sim import SimSource
from tests.support import read_topic

ROOT = Path(__file__).resolve().parents[2]


def check_order(ticks: list[Tick]) -> dict[str, list[int]]:
    by_symbol: dict[str, list[int]] = {}
    for t in ticks:
        by_symbol.setdefault(t.symbol, []).append(t.seq)
    for sym, seqs in by_symbol.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{sym} out of order or gapped"
    return by_symbol


def test_run_ingest_publishes_sequenced_ticks(kafka_settings: Settings) -> None:
    src = SimSource(["AAPL", "MSFT", "IBM"], seed=3)
    report = run_ingest(src, EventProducer(kafka_settings), ShutdownFlag(), rate=0, max_ticks=3000)
    assert report.produced == 3000
    ticks = [decode(m.value(), Tick) for m in read_topic(kafka_settings, kafka_settings.topic("ticks"), expect=3000)]
    by_symbol = check_order(ticks)
    assert {s: len(v) for s, v in by_symbol.items()} == {"AAPL": 1000, "MSFT": 1000, "IBM": 1000}


def test_rate_is_respected(kafka_settings: Settings) -> None:
    src = SimSource(["AAPL"], seed=3)
    report = run_ingest(src, EventProducer(kafka_settings), ShutdownFlag(), rate=200, duration_s=1.5)
    assert 200 <= report.produced <= 320


def test_cli_csv_replay_of_the_offline_data(kafka_settings: Settings) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_TOPIC_PREFIX": kafka_settings.kafka_topic_prefix}
    out = subprocess.run([sys.executable, "-m", "ingest", "--source", "csv", "--file", "bokeh", "--rate", "0",
                          "--count", "2000"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ingest: 2000 ticks" in out.stderr
    ticks = [decode(m.value(), Tick) for m in read_topic(kafka_settings, kafka_settings.topic("ticks"), expect=2000)]
    assert {t.source for t in ticks} == {"csv"}
    check_order(ticks)


def test_cli_rejects_bad_configuration() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KAFKA_BOOTSTRAP_SERVERS": "nonsense"}
    out = subprocess.run([sys.executable, "-m", "ingest", "--count", "1"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in out.stderr
