"""The scheduled retrain: a Celery app of its own, the Procfile's ``retrain`` process (``python -m predict.tasks``).

The notification workers never import TensorFlow; this app does, inside the
task only, so it runs as its own worker (a training run would hold a
notification worker's slot for minutes, and its dyno's memory). Its beat
enqueues ``predict.retrain`` every ``PREDICT_RETRAIN_INTERVAL_S`` seconds (0, the default: no schedule). The task
trains on the newest ``PREDICT_RETRAIN_BARS`` bars per symbol of the serving
bar size from the ``bars`` projection (the project's own stored bars) and
promotes the candidate only on a significant non-inferiority against the
serving model on the same held-out bars (:mod:`predict.retrain`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Mapping

from celery import Celery

from events.settings import Settings, SettingsError, load_settings


_DEFAULTS = Settings()


@dataclass(frozen=True)
class RetrainConfig:
    # the defaults are the settings' own (events/settings.py), not a second copy of them
    interval_s: int = _DEFAULTS.predict_retrain_interval_s  # 0: no scheduled retrain
    bars: int = _DEFAULTS.predict_retrain_bars              # the newest bars per symbol to train and evaluate on
    min_bars: int = _DEFAULTS.predict_retrain_min_bars      # a symbol with fewer stored bars is left out
    margin: float = _DEFAULTS.predict_retrain_margin        # the candidate's MSE may exceed the current's by this
    alpha: float = _DEFAULTS.predict_retrain_alpha
    epochs: int | None = _DEFAULTS.predict_retrain_epochs or None  # None: the model's default
    queue: str = _DEFAULTS.predict_retrain_queue


def retrain_config(settings: Settings) -> RetrainConfig:
    """The retrain's figures, read and validated by the typed settings loader (``PREDICT_RETRAIN_*``)."""
    return RetrainConfig(
        interval_s=settings.predict_retrain_interval_s, bars=settings.predict_retrain_bars,
        min_bars=settings.predict_retrain_min_bars, margin=settings.predict_retrain_margin,
        alpha=settings.predict_retrain_alpha, epochs=settings.predict_retrain_epochs or None,
        queue=settings.predict_retrain_queue)


def load_retrain_config(env: Mapping[str, str]) -> RetrainConfig:
    """:func:`retrain_config` of the settings of ``env`` (a bad value is a :class:`SettingsError` naming it)."""
    return retrain_config(load_settings(env))


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
    root = Path(registry_root or settings.registry_root)
    meta, decision = retrain(series, Registry(root), source=f"bars projection ({settings.bar_seconds} s)",
                             data_source="bars", config=model, margin=config.margin, alpha=config.alpha, log=log)
    return {"status": meta["status"], "version": meta["version"], "reason": decision.reason}


def make_celery(settings: Settings, config: RetrainConfig) -> Celery:
    """The retrain's app (a factory: the process's settings passed in, read nowhere else)."""
    celery = Celery("tickerbell-predict", broker=settings.redis_url)
    schedule = {} if config.interval_s <= 0 else {
        "retrain": {"task": "predict.retrain", "schedule": float(config.interval_s),
                    "options": {"queue": config.queue, "expires": float(config.interval_s)}}}
    celery.conf.update(task_acks_late=False, worker_prefetch_multiplier=1, task_ignore_result=True,
                       task_default_queue=config.queue, broker_connection_retry_on_startup=True,
                       worker_hijack_root_logger=False, beat_schedule=schedule,
                       beat_schedule_filename=str(settings.var_dir / f"celerybeat-{config.queue}"))

    def retrain_task() -> dict[str, Any]:
        return retrain_from_bars(settings, config)

    celery.task(name="predict.retrain", shared=False)(retrain_task)
    celery.tickerbell = (settings, config)
    return celery


def main() -> int:
    """The ``retrain`` process of the Procfile: this app's worker with its beat embedded, one task at a
    time, serving /metrics like every long-running process. With no interval it idles (no schedule)."""
    import logging
    import signal

    from events.observability import serve_metrics, setup_logging

    # until Celery installs its own handlers (warm shutdown), a SIGTERM ends start-up cleanly
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    config = retrain_config(settings)
    app = make_celery(settings, config)
    setup_logging("retrain", settings.log_level, json_logs=True)
    serve_metrics(settings.metrics_port)
    if config.interval_s <= 0:
        logging.getLogger(__name__).info("PREDICT_RETRAIN_INTERVAL_S is 0: no scheduled retrain")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app.worker_main(["worker", "-B", "-Q", config.queue, "-P", "threads", "-c", "1", "-l", settings.log_level,
                     "--without-gossip", "--without-mingle", "-n", f"retrain-{config.queue}@%h"])
    return 0


_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """``app``, for ``celery -A predict.tasks``: made on first access from this process's environment."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        settings = load_settings()
        _app = make_celery(settings, retrain_config(settings))
    return _app


if __name__ == "__main__":
    raise SystemExit(main())
