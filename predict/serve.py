"""Streaming predictions: ``metrics`` (Bar) -> ``predictions`` (Prediction).

:class:`PredictionStage` is the transform: it keeps the last bars of every
(symbol, bar size), and for each new bar of a symbol with enough history it
builds the feature window; all windows of a poll batch go through the model
in one call. Features come from the bars' OHLCV (not from the stream's
indicators), exactly as in training.

Backfilled history (``Bar.history``) fills the windows, so a symbol with
history gets a forecast on its first live bar; a history bar is forecast only
while the bar it forecasts has not closed yet (the newest bar of a fresh
backfill: a forecast of now, not of the past). A model forecasts only bars of
the size it was trained on: a daily model says nothing about 60 s bars.

:func:`serve` runs it as the step of a consumer pipeline (``events.pipeline``,
producing the predictions): it waits for a promoted model, then consumes, and
between batches checks the registry's pointer so a newly promoted model is
served without a restart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from events.contract import Bar, Prediction
from events.contract_ids import prediction_id
from events.kafka import ShutdownFlag
from events.pipeline import Decoded, Pipeline, RunnerStats
from events.settings import Settings
from predict.features import compute_features, min_history, targets
from predict.model import Forecaster
from predict.registry import Registry, RegistryError, model_bar_seconds

log = logging.getLogger(__name__)

HORIZON_BARS = 1

_MS_FIELDS = ("trained_from_ms", "trained_to_ms", "holdout_from_ms", "holdout_to_ms")
_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # the contract's EpochMs range


def provenance(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``Prediction`` fields that say what the model was trained and evaluated on (from its
    registry record; None where the record predates them or a time is outside the contract's range)."""
    on = meta.get("trained_on") or {}
    out: dict[str, Any] = {"trained_bar_seconds": model_bar_seconds(meta)}
    for name in _MS_FIELDS:
        v = on.get(name)
        out[name] = int(v) if isinstance(v, (int, float)) and _MIN_MS <= v <= _MAX_MS else None
    n, p, src = on.get("holdout_n"), on.get("skill_p"), on.get("data_source")
    out["holdout_n"] = int(n) if isinstance(n, int) and n >= 0 else None
    out["skill_p"] = float(p) if isinstance(p, (int, float)) and 0.0 <= p <= 1.0 else None
    out["data_source"] = str(src)[:64] if src else None
    return out


class _History:
    """The last bars of one (symbol, bar size): a numpy buffer of twice the capacity, so that an
    append is one row write (and, every ``capacity`` bars, one block copy) and the window a view."""

    __slots__ = ("buf", "n", "seen", "capacity", "last_start_ms")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buf = np.empty((2 * capacity, 5))
        self.n = 0
        self.seen = 0
        self.last_start_ms = -1

    def append(self, start_ms: int, row: tuple[float, float, float, float, float]) -> None:
        if self.n == len(self.buf):
            self.buf[:self.capacity] = self.buf[self.n - self.capacity:self.n]
            self.n = self.capacity
        self.buf[self.n] = row
        self.n += 1
        self.seen += 1
        self.last_start_ms = start_ms

    def last(self, k: int) -> np.ndarray | None:
        """A copy of the last ``k`` rows (later appends may move the buffer), or None if fewer."""
        return self.buf[self.n - k:self.n].copy() if min(self.seen, self.capacity) >= k else None


@dataclass
class PredictionStage:
    """Bars in, predictions out (no I/O). ``set_model`` swaps the model between batches."""

    forecaster: Forecaster
    meta: dict[str, Any]
    max_history: int = 128
    histories: dict[tuple[str, int], _History] = field(default_factory=dict)
    # (symbol, bar_seconds, before_ms, n) -> (starts, OHLCV) of stored bars: a restart need not wait
    # for ``need`` new bars per symbol (the bars projection keeps what this process saw before)
    history_source: Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray]] | None = None
    #: the wall clock (epoch ms): whether a history bar's next bar has closed yet
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    warmed: int = 0
    skipped_short: int = 0
    skipped_replay: int = 0
    skipped_history: int = 0    # history bars whose next bar had closed: a forecast of the past
    skipped_bar_size: int = 0   # bars of a size the model was not trained on
    _provenance: dict[str, Any] = field(default_factory=dict)
    _warned: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._provenance = provenance(self.meta)

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def need(self) -> int:
        return min_history(self.forecaster.config.window)

    @property
    def trained_bar_seconds(self) -> int | None:
        """The model's bar size (None: its record does not say, so every bar size is served)."""
        trained: int | None = self._provenance["trained_bar_seconds"]
        return trained

    def set_model(self, forecaster: Forecaster, meta: dict[str, Any]) -> None:
        self.forecaster, self.meta = forecaster, meta
        self._provenance = provenance(meta)

    def _serves(self, bar: Bar) -> bool:
        trained = self.trained_bar_seconds
        if trained is None or trained == bar.bar_seconds:
            return True
        self.skipped_bar_size += 1
        if (self.version, bar.bar_seconds) not in self._warned:
            self._warned.add((self.version, bar.bar_seconds))
            log.warning("model %s was trained on %d s bars: it does not forecast %d s bars (%s and every "
                        "other symbol of that size get no forecast; train one with `python -m predict "
                        "ensure-model` for BAR_SECONDS=%d)", self.version, trained, bar.bar_seconds, bar.symbol,
                        bar.bar_seconds)
        return False

    def _append(self, bar: Bar) -> np.ndarray | None:
        """Add the bar to its history; the last ``need`` bars as OHLCV if there are enough."""
        key = (bar.symbol, bar.bar_seconds)
        h = self.histories.get(key)
        if h is None:
            h = self.histories[key] = _History(max(self.max_history, self.need))
            if self.history_source is not None:
                self._warm(h, bar)
        if bar.start_ms <= h.last_start_ms:
            self.skipped_replay += 1  # a redelivered or out-of-order bar: its prediction exists
            return None
        h.append(bar.start_ms, (bar.open, bar.high, bar.low, bar.close, bar.volume))
        window = h.last(self.need)
        if window is None:
            self.skipped_short += 1
        return window

    def _warm(self, h: _History, bar: Bar) -> None:
        assert self.history_source is not None
        starts, rows = self.history_source(bar.symbol, bar.bar_seconds, bar.start_ms, self.need - 1)
        for start, row in zip(starts.tolist(), rows.tolist()):
            h.append(start, tuple(row))
        self.warmed += len(starts)

    def predict_bars(self, bars: Iterable[Bar]) -> list[Prediction]:
        pending: list[tuple[Bar, np.ndarray]] = []
        now_ms = None
        for bar in bars:
            window = self._append(bar)
            if not self._serves(bar) or window is None:  # every bar fills its window, for a model swap
                continue
            if bar.history:
                now_ms = self.clock_ms() if now_ms is None else now_ms
                if bar.ts + bar.bar_seconds * 1000 <= now_ms:
                    self.skipped_history += 1
                    continue
            pending.append((bar, window))
        if not pending:
            return []
        ohlcv = np.stack([w for _, w in pending])
        w = self.forecaster.config.window
        x = compute_features(ohlcv)[:, -w:, :]
        sigma = targets(ohlcv)[1][:, -1]
        ok = np.isfinite(x).all(axis=(1, 2)) & np.isfinite(sigma)  # a flat series has no scale
        q = self.forecaster.predict_returns(x[ok], sigma[ok])
        skill = self.meta.get("skill")
        skill = None if skill is None else float(skill)
        level = float(self.meta.get("interval_level", self.forecaster.config.interval_level))
        bars = [bar for (bar, _), good in zip(pending, ok) if good]
        closes = np.array([bar.close for bar in bars])
        prices = (closes[:, None] * np.exp(q)).tolist()
        out = []
        for bar, (lo, mid, hi), r in zip(bars, prices, q[:, 1].tolist()):
            out.append(Prediction(
                id=prediction_id(bar.symbol, bar.start_ms, HORIZON_BARS, self.version),
                ts=bar.start_ms + bar.bar_seconds * 1000,
                symbol=bar.symbol, base_start_ms=bar.start_ms, bar_seconds=bar.bar_seconds,
                horizon_bars=HORIZON_BARS, base_close=bar.close, predicted_close=mid, predicted_return=r,
                lower=lo, upper=hi, interval_level=level, model_version=self.version, skill=skill,
                **self._provenance,
            ))
        return out

    def __call__(self, batch: list[Decoded]) -> list[Prediction]:
        bars = sorted((d.event for d in batch if isinstance(d.event, Bar)), key=lambda b: b.start_ms)
        return self.predict_bars(bars)


class ModelWatcher:
    """Loads the promoted model, and a newer one when the pointer changes (checked every ``every_s``)."""

    def __init__(self, registry: Registry, loader: Callable[[Registry, str], tuple[Forecaster, dict[str, Any]]],
                 every_s: float = 5.0) -> None:
        self.registry, self.loader, self.every_s = registry, loader, every_s
        self.version: str | None = None
        self._checked = 0.0

    def poll(self, force: bool = False) -> tuple[Forecaster, dict[str, Any]] | None:
        """A newly promoted (forecaster, meta), or None when nothing changed or it is not time yet."""
        now = time.monotonic()
        if not force and now - self._checked < self.every_s:
            return None
        self._checked = now
        version = self.registry.promoted_version()
        if version is None or version == self.version:
            return None
        try:
            loaded = self.loader(self.registry, version)
        except (RegistryError, OSError, ValueError) as exc:
            log.error("cannot load promoted model %s: %s (keeping %s)", version, exc, self.version)
            return None
        self.version = version
        return loaded


def stored_history(settings: Settings) -> Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray]]:
    """A history source reading the bars projection; on a database error it logs and gives nothing."""
    from sqlalchemy.exc import SQLAlchemyError

    from events.db import session_factory
    from predict.data import recent_bars

    sessions = session_factory(settings)

    def source(symbol: str, bar_seconds: int, before_ms: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        try:
            return recent_bars(sessions, symbol, bar_seconds, before_ms, n)
        except SQLAlchemyError as exc:  # no table yet, database down: serve from live bars only
            log.warning("no stored bars for %s (%s); it needs %d live bars first", symbol,
                        str(exc).splitlines()[0], n + 1)
            return np.empty(0, np.int64), np.empty((0, 5))

    return source


def serve(settings: Settings, registry: Registry, *, group_id: str = "predict", reload_every_s: float = 5.0,
          shutdown: ShutdownFlag | None = None, wait_for_model: bool = True,
          loader: Callable[[Registry, str], tuple[Forecaster, dict[str, Any]]] | None = None,
          on_model: Callable[[str], None] | None = None,
          history_source: Callable[[str, int, int, int], tuple[np.ndarray, np.ndarray]] | None = None,
          ) -> RunnerStats | None:
    """Run until the shutdown flag is set. Without a promoted model: wait for one (or return None).

    ``on_model(version)`` is called each time a model starts being served (before the next poll).
    """
    if loader is None:
        from predict.pipeline import load_forecaster

        loader = load_forecaster
    watcher = ModelWatcher(registry, loader, reload_every_s)
    loaded = watcher.poll(force=True)
    last_notice = time.monotonic()
    if loaded is None:
        log.warning("no promoted model in %s: no predictions until one is promoted. "
                    "Train one with `python -m predict ensure-model` (offline data, under a minute) "
                    "or `python -m predict train`.", registry.root)
        if not wait_for_model:
            return None
    shutdown = shutdown or ShutdownFlag().install()
    while loaded is None and not shutdown.wait(1.0):
        loaded = watcher.poll(force=True)
        if loaded is None and time.monotonic() - last_notice > 60:
            log.warning("still waiting for a promoted model in %s", registry.root)
            last_notice = time.monotonic()
    if loaded is None:
        return None
    stage = PredictionStage(*loaded, history_source=history_source)
    if on_model:
        on_model(stage.version)
    log.info("serving model %s (holdout skill %+.4f vs persistence, trained on %s s bars) on %s -> %s",
             stage.version, stage.meta.get("skill", float("nan")), stage.trained_bar_seconds or "?",
             settings.topic("metrics"), settings.topic("predictions"))
    if stage.trained_bar_seconds not in (None, settings.bar_seconds):
        log.warning("model %s was trained on %d s bars but BAR_SECONDS is %d: no forecasts for those bars; "
                    "`python -m predict ensure-model` trains one for them", stage.version,
                    stage.trained_bar_seconds, settings.bar_seconds)
    runner: Pipeline[Prediction] = Pipeline(settings, settings.topic(group_id), {settings.topic("metrics"): Bar},
                                            stage, shutdown=shutdown)
    reported = time.monotonic()

    def after_batch(_n: int) -> None:
        nonlocal reported
        newer = watcher.poll()
        if newer is not None:  # swapped between batches: the next batch is forecast by the new model
            stage.set_model(*newer)
            log.info("now serving newly promoted model %s (skill %+.4f)", stage.version,
                     stage.meta.get("skill", float("nan")))
            if on_model:
                on_model(stage.version)
        if time.monotonic() - reported > 60:
            reported = time.monotonic()
            s = runner.stats
            log.info("consumed %d bars, produced %d predictions, %d to DLQ, %d bars short of history, "
                     "%d stored bars warmed, %d history bars not forecast (their next bar had closed), "
                     "%d bars of another size than the model's", s.consumed, s.produced, s.dlq,
                     stage.skipped_short, stage.warmed, stage.skipped_history, stage.skipped_bar_size)

    return runner.run(on_batch=after_batch)
