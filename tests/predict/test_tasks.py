"""The scheduled retrain's Celery app: configured from the environment, off by default, and its task
trains on the bars projection and decides by non-inferiority."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from events.db import session_factory, upgrade
from events.models import BarRecord
from events.settings import Settings, SettingsError
from predict.registry import Registry
from predict.tasks import RetrainConfig, load_retrain_config, make_celery, retrain_from_bars
from tests.predict.synthetic import ar1_series


def test_the_schedule_is_configurable_and_off_by_default(base_settings: Settings) -> None:
    assert load_retrain_config({}) == RetrainConfig()
    off = make_celery(base_settings, RetrainConfig())
    assert off.conf.beat_schedule == {}
    cfg = load_retrain_config({"PREDICT_RETRAIN_INTERVAL_S": "86400", "PREDICT_RETRAIN_MARGIN": "0.02",
                               "PREDICT_RETRAIN_EPOCHS": "3"})
    assert (cfg.interval_s, cfg.margin, cfg.epochs) == (86_400, 0.02, 3)
    on = make_celery(base_settings, cfg)
    assert on.conf.beat_schedule["retrain"]["task"] == "predict.retrain"
    assert on.conf.beat_schedule["retrain"]["schedule"] == 86_400.0 and "predict.retrain" in on.tasks
    for bad in ({"PREDICT_RETRAIN_INTERVAL_S": "-1"}, {"PREDICT_RETRAIN_MARGIN": "x"}, {"PREDICT_RETRAIN_ALPHA": "2"}):
        with pytest.raises(SettingsError):
            load_retrain_config(bad)


def test_the_task_trains_on_the_stored_bars(base_settings: Settings, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bars.db'}"
    upgrade(url)
    settings = replace(base_settings, database_url=url, bar_seconds=60)
    sessions = session_factory(settings)
    with sessions() as s:
        for sym, seed in (("AAA", 61), ("BBB", 62)):
            series = ar1_series(sym, n=700, seed=seed)
            for start, (o, h, lo, c, v) in zip(series.start_ms, series.ohlcv):
                s.add(BarRecord(symbol=sym, bar_seconds=60, start_ms=int(start), open=o, high=h, low=lo, close=c,
                                volume=v, count=1, vwap=c))
        s.add(BarRecord(symbol="FEW", bar_seconds=60, start_ms=int(series.start_ms[0]), open=1, high=1, low=1,
                        close=1, volume=1, count=1, vwap=1))  # too few bars: left out
        s.commit()
    config = RetrainConfig(bars=600, min_bars=400, epochs=3)
    first = retrain_from_bars(settings, config, registry_root=tmp_path / "models", log=lambda _: None)
    assert first["status"] == "promoted" and "first model" in first["reason"]
    second = retrain_from_bars(settings, config, registry_root=tmp_path / "models", log=lambda _: None)
    assert second["status"] in ("promoted", "not_promoted") and "shared held-out dates" in second["reason"]
    meta = Registry(tmp_path / "models").meta(second["version"])
    assert meta["trained_on"]["bar_seconds"] == 60 and meta["trained_on"]["data_source"] == "bars"
    assert set(meta["data"]) == {"AAA", "BBB"} and np.isfinite(meta["skill"])
    empty = retrain_from_bars(replace(settings, bar_seconds=5), config, registry_root=tmp_path / "m2")
    assert empty["status"] == "skipped"
