"""`python -m predict evaluate|train|ensure-model|serve` end to end (in-process, small data)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ingest.history import history_window, simulated_history
from predict.__main__ import main
from predict.data import BarSeries
from predict.registry import Registry
from tests.predict.conftest import Trained


def write_csv(series: list[BarSeries], path: Path) -> Path:
    frames = [pd.DataFrame({"symbol": s.symbol, "start_ms": s.start_ms, "open": s.ohlcv[:, 0], "high": s.ohlcv[:, 1],
                            "low": s.ohlcv[:, 2], "close": s.ohlcv[:, 3], "volume": s.ohlcv[:, 4]}) for s in series]
    pd.concat(frames).to_csv(path, index=False)
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TICKERBELL_VAR", str(tmp_path / "var"))
    monkeypatch.delenv("MODEL_REGISTRY", raising=False)
    return tmp_path


def test_evaluate_writes_table_json_plots_and_doc(trained: Trained, env: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    csv = write_csv(trained.series, env / "ar.csv")
    doc = env / "docs" / "forecast-evaluation.md"
    argv = ["evaluate", "--source", "csv", "--csv", str(csv), "--bar-seconds", "60", "--folds", "1",
            "--test-fraction", "0.25", "--window", "10", "--epochs", "8", "--out", str(env / "out"), "--doc", str(doc)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch   1/8" in out and "val_loss" in out and "headline: LSTM skill vs persistence +0." in out
    md = doc.read_text()
    assert "python -m predict evaluate --source csv" in md and "## AAA" in md and "## All symbols pooled" in md
    assert "| persistence |" in md and "| drift |" in md and "| linear AR |" in md
    assert "beats persistence" in md
    table = json.loads((env / "out" / "evaluation.json").read_text())["table"]
    assert table["ALL"]["lstm"]["skill"] > 0.1 and table["ALL"]["persistence"]["skill"] == 0
    for sym in ("AAA", "BBB"):
        png = doc.parent / "forecast-evaluation" / f"{sym}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (env / "out" / "evaluation.md").read_text() == md


def test_ensure_model_trains_on_simulated_history_at_bar_seconds(trained: Trained, env: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    registry = Registry(env / "var" / "models")
    end_ms = 1_780_000_000_000
    small = ["--epochs", "2", "--symbols", "AAPL,MSFT", "--bars", "400", "--end-ms", str(end_ms)]
    assert main(["ensure-model", *small]) == 0
    out = capsys.readouterr().out
    assert "no promoted model" in out and "simulated history at 60 s bars (BAR_SECONDS)" in out
    assert "registered v0001" in out and registry.promoted_version() == "v0001"
    meta = registry.meta("v0001")
    on = meta["trained_on"]
    assert on["bar_seconds"] == 60 and on["data_source"] == "sim-history" and set(meta["data"]) == {"AAPL", "MSFT"}
    # the bars the ingest backfill would publish for that window, every one of them
    first, last = history_window(end_ms, 60, 400)
    aapl = simulated_history("AAPL", bar_seconds=60, end_ms=end_ms, n_bars=400)
    assert meta["data"]["AAPL"]["bars"] == 400 and meta["data"]["AAPL"]["to_ms"] == last == aapl[-1].start_ms
    assert on["trained_from_ms"] == first < on["trained_to_ms"] < on["holdout_from_ms"] <= on["holdout_to_ms"] <= last
    assert on["holdout_n"] == meta["split"]["n_test"] > 50 and 0.0 <= on["skill_p"] <= 1.0
    assert on["skill"] == meta["skill"]
    assert main(["ensure-model"]) == 0
    assert "v0001 is promoted" in capsys.readouterr().out and len(registry.versions()) == 1
    # a model trained on structured 60 s data has a better holdout skill: promoted over it
    csv = write_csv(trained.series, env / "ar.csv")
    assert main(["train", "--source", "csv", "--csv", str(csv), "--bar-seconds", "60", "--window", "10",
                 "--epochs", "8"]) == 0
    assert registry.promoted_version() == "v0002", registry.meta("v0002")["status_reason"]
    assert registry.meta("v0001")["status"] == "retired" and registry.meta("v0002")["trained_on"]["data_source"] == "csv"
    # a daily model is not comparable: not promoted over a 60 s one
    assert main(["train", "--source", "offline", "--symbols", "AAPL", "--epochs", "2"]) == 0
    assert registry.meta("v0003")["status"] == "not_promoted" and registry.promoted_version() == "v0002"
    assert "86400 s bars" in registry.meta("v0003")["status_reason"]


def test_ensure_model_replaces_a_promoted_daily_model(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = Registry(env / "var" / "models")
    assert main(["ensure-model", "--source", "offline", "--epochs", "2"]) == 0  # what make run trained before
    assert "offline sample data (daily bars)" in capsys.readouterr().out
    meta = registry.meta("v0001")
    assert set(meta["data"]) == {"AAPL", "GOOG", "IBM", "MSFT"} and meta["data"]["AAPL"]["from"] == "2000-03-01"
    assert meta["trained_on"]["bar_seconds"] == 86_400 and meta["trained_on"]["data_source"] == "offline"
    assert main(["ensure-model", "--source", "offline"]) == 0  # a daily model for daily bars: kept
    assert "v0001 is promoted" in capsys.readouterr().out
    assert main(["ensure-model", "--epochs", "2", "--symbols", "AAPL,MSFT", "--bars", "400"]) == 0
    assert "trained on 86400 s bars, not on the 60 s bars to serve" in capsys.readouterr().out
    assert registry.promoted_version() == "v0002" and registry.meta("v0001")["status"] == "retired"
    assert registry.meta("v0002")["status_reason"] == "forced: v0001 was trained on 86400 s bars and cannot serve 60 s bars"
    assert main(["ensure-model"]) == 0 and "v0002 is promoted" in capsys.readouterr().out


def test_evaluate_on_simulated_history(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["evaluate", "--source", "sim-history", "--symbols", "AAPL", "--bars", "500", "--end-ms",
            "1780000000000", "--folds", "1", "--test-fraction", "0.25", "--window", "10", "--epochs", "2",
            "--out", str(env / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "sim-history (seeded simulated history, as the ingest backfill; 60s bars, 500 per symbol)" in out
    assert "AAPL (500 bars)" in out
    table = json.loads((env / "out" / "evaluation.json").read_text())["table"]
    assert table["ALL"]["lstm"]["n"] > 50 and 0 <= table["ALL"]["lstm"]["dm_p_vs_persistence"] <= 1


def test_serve_without_a_model_can_exit_with_a_clear_message(env: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        assert main(["serve", "--exit-if-no-model"]) == 3
    assert "no promoted model in" in caplog.text and "python -m predict ensure-model" in caplog.text


def test_bad_input_is_a_clear_error(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--source", "csv"]) == 1
    assert "--source csv needs --csv FILE" in capsys.readouterr().err


def test_the_serve_process_stops_cleanly_on_sigterm(trained: Trained, kafka_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import signal
    import subprocess
    import sys

    from events.contract import Prediction
    from events.kafka import EventProducer
    from predict.features import min_history
    from tests.predict.conftest import register
    from tests.predict.test_serve import bars_of
    from tests.support import read_events

    root = Path(__file__).resolve().parents[2]
    register(trained, tmp_path / "models")
    producer = EventProducer(kafka_settings)
    for bar in bars_of(trained.series[0], 0, min_history(trained.config.window) + 1):
        producer.produce(bar)
    producer.flush()
    env = {**os.environ, "PYTHONPATH": str(root), "KAFKA_TOPIC_PREFIX": kafka_settings.kafka_topic_prefix,
           "MODEL_REGISTRY": str(tmp_path / "models"), "TICKERBELL_VAR": str(tmp_path / "var")}
    proc = subprocess.Popen([sys.executable, "-m", "predict", "serve", "--no-warm-start"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        preds = read_events(kafka_settings, "predictions", Prediction, expect=2, timeout_s=90)
        assert {p.model_version for p in preds} == {"v0001"}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "serving model v0001" in out and "produced 2 predictions" in out
    assert "oneDNN" not in out  # TensorFlow's import banner is silenced


def test_sim_history_needs_bars(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--source", "sim-history", "--bars", "1"]) == 1
    assert "at least 2 bars" in capsys.readouterr().err
