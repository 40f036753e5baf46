"""The scheduled retrain: a Celery app of its own (``celery -A predict.tasks worker -B -Q <queue>``).

The notification workers never import TensorFlow; this app does, so it runs
as its own worker. Its beat enqueues ``predict.retrain`` every
``PREDICT_RETRAIN_INTERVAL_S`` seconds (0, the default: no schedule). The task
trains on the newest ``PREDICT_RETRAIN_BARS`` bars per symbol of the serving
bar size from the ``bars`` projection (the project's own stored bars) and
promotes the candidate only on a significant non-inferiority against the
serving model on the same held-out bars (:mod:`predict.retrain`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Mapping

from celery import Celery

from events.settings import Settings, SettingsError, env_int, load_settings


@dataclass(frozen=True)
class RetrainConfig:
    interval_s: int = 0          # 0: no scheduled retrain
    bars: int = 5000             # the newest bars per symbol to train and evaluate on
    min_bars: int = 400          # a symbol with fewer stored bars is left out
    margin: float = 0.01         # the candidate's MSE may exceed the current's by this fraction
    alpha: float = 0.05
    epochs: int | None = None    # None: the model's default
    queue: str = "tickerbell-predict"


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def load_retrain_config(env: Mapping[str, str]) -> RetrainConfig:
    d = RetrainConfig()
    epochs = env_int(env, "PREDICT_RETRAIN_EPOCHS", 0, 0, 1000)
    return RetrainConfig(
        interval_s=env_int(env, "PREDICT_RETRAIN_INTERVAL_S", d.interval_s, 0, 365 * 86_400),
        bars=env_int(env, "PREDICT_RETRAIN_BARS", d.bars, 100, 10_000_000),
        min_bars=env_int(env, "PREDICT_RETRAIN_MIN_BARS", d.min_bars, 50, 10_000_000),
        margin=_float(env, "PREDICT_RETRAIN_MARGIN", d.margin, 0.0, 1.0),
        alpha=_float(env, "PREDICT_RETRAIN_ALPHA", d.alpha, 1e-6, 0.5),
        epochs=epochs or None,
        queue=env.get("PREDICT_RETRAIN_QUEUE") or d.queue)


def retrain_from_bars(settings: Settings, config: RetrainConfig, *, registry_root: Any = None,
                      log: Any = print) -> dict[str, Any]:
    """One retrain on the stored bars; returns what was decided (the candidate's version and status)."""
    from pathlib import Path

    from events.db import session_factory
    from predict.data import BarSeries, load_bars_table
    from predict.model import ModelConfig
    from predict.registry import Registry
    from predict.retrain import retrain

    series = load_bars_table(session_factory(settings), bar_seconds=settings.bar_seconds, min_bars=config.min_bars)
    series = [BarSeries(s.symbol, s.bar_seconds, s.start_ms[-config.bars:], s.ohlcv[-config.bars:]) for s in series]
    if not series:
        return {"status": "skipped", "reason": f"no symbol has {config.min_bars} stored {settings.bar_seconds} s bars"}
    model = ModelConfig() if config.epochs is None else replace(ModelConfig(), epochs=config.epochs)
    root = Path(registry_root or os.environ.get("MODEL_REGISTRY") or settings.var_dir / "models")
    meta, decision = retrain(series, Registry(root), source=f"bars projection ({settings.bar_seconds} s)",
                             data_source="bars", config=model, margin=config.margin, alpha=config.alpha, log=log)
    return {"status": meta["status"], "version": meta["version"], "reason": decision.reason}


def make_celery(settings: Settings, config: RetrainConfig) -> Celery:
    celery = Celery("tickerbell-predict", broker=settings.redis_url)
    schedule = {} if config.interval_s <= 0 else {
        "retrain": {"task": "predict.retrain", "schedule": float(config.interval_s),
                    "options": {"queue": config.queue, "expires": float(config.interval_s)}}}
    celery.conf.update(task_acks_late=False, worker_prefetch_multiplier=1, task_ignore_result=True,
                       task_default_queue=config.queue, broker_connection_retry_on_startup=True,
                       worker_hijack_root_logger=False, beat_schedule=schedule,
                       beat_schedule_filename=str(settings.var_dir / f"celerybeat-{config.queue}"))

    @celery.task(name="predict.retrain", shared=False)
    def retrain_task() -> dict[str, Any]:
        return retrain_from_bars(settings, config)

    celery.tickerbell = (settings, config)  # type: ignore[attr-defined]
    return celery


app = make_celery(load_settings(os.environ), load_retrain_config(os.environ))
