"""The event contract: every event type, its topic, key and schema version.

Events travel as JSON objects (readable by Spark's ``from_json`` and by a console consumer):

``type``  the event type tag (``tick``, ``bar``, ``prediction``, ``rule``, ``alert``,
          ``watched``, ``history_bar``)
``v``     the schema version of that type
``id``    a unique id; deterministic where a replay must reproduce it
``ts``    event time, epoch milliseconds, UTC

and its own payload fields beside them (flat: the hot path decodes a tick in a couple of
microseconds). Decoding validates types and ranges; a failure raises :class:`InvalidEvent`
whose message names the offending field (``... - at `$.price```).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from events.contract_ids import (  # re-exported (__all__): the ids are part of the contract
    alert_id, bar_id, event_id, feed_status_id, history_bar_id, prediction_id, rule_event_id, tick_id, watched_id,
)
from events.vocabulary import Condition, Frequency, OperatorName

Operator = OperatorName  # the contract's older name for it

__all__ = [
    "Alert", "AlertState", "Bar", "Condition", "DLQ_SUFFIX", "Event", "FeedStatus", "Frequency", "HistoryBar",
    "InvalidEvent", "Operator", "Prediction", "Rule", "TOPICS", "Tick", "Watched", "decode", "decoder_for", "encode",
    "topic_of", "alert_id", "bar_id", "event_id", "feed_status_id", "history_bar_id", "prediction_id",
    "rule_event_id", "tick_id", "watched_id",
]

DLQ_SUFFIX = ".dlq"

# Ticker symbols as exchanges and Yahoo write them: BRK.B, ^GSPC, EURUSD=X, BTC-USD.
SYMBOL_PATTERN = r"^[A-Z0-9^][A-Z0-9.\-=^]{0,15}$"
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN)]
# 2000-01-01 .. 2100-01-01 in epoch ms: anything outside is a unit error, not a time.
EpochMs = Annotated[int, msgspec.Meta(ge=946_684_800_000, le=4_102_444_800_000)]
Price = Annotated[float, msgspec.Meta(gt=0.0, lt=1e12)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0, lt=1e15)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class InvalidEvent(ValueError):
    """Raised when bytes are not a valid event of the expected type."""


def _check_finite(obj: msgspec.Struct, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"`{name}` must be finite, got {value!r}")


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event. Subclasses set ``topic`` and ``key``."""

    id: str
    ts: EpochMs
    v: int = 1

    @property
    def key(self) -> bytes:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


class Tick(Event, frozen=True, kw_only=True, tag="tick"):
    """One trade (or quote) of a symbol. Topic ``ticks``, key ``symbol``.

    ``seq`` increases by one per symbol and source; ``size`` is the traded
    volume in shares. ``id`` is ``tick_id(source, symbol, seq)``.
    """

    symbol: Symbol
    price: Price
    size: NonNegative
    source: ShortText
    seq: Annotated[int, msgspec.Meta(ge=0)]
    #: the market session of the trade where the source knows it (Yahoo's does): pre, regular, post
    session: Literal["pre", "regular", "post"] | None = None

    def __post_init__(self) -> None:
        _check_finite(self, ("price", "size"))

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


OptFloat = float | None


class Bar(Event, frozen=True, kw_only=True, tag="bar"):
    """One closed bar of a symbol with the indicators known at its close.

    Topic ``metrics``, key ``symbol``. ``ts`` is the bar's end (exclusive), ``start_ms`` its start;
    ``id`` is ``bar_id(symbol, bar_seconds, start_ms)``. Indicators are ``None`` during their
    warm-up (see ``stream/indicators.py`` for every convention)."""

    symbol: Symbol
    start_ms: EpochMs
    bar_seconds: Annotated[int, msgspec.Meta(gt=0)]
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NonNegative
    count: Annotated[int, msgspec.Meta(gt=0)]
    vwap: Price
    change_pct: OptFloat = None
    sma_5: OptFloat = None
    sma_10: OptFloat = None
    sma_20: OptFloat = None
    ema_12: OptFloat = None
    ema_26: OptFloat = None
    macd: OptFloat = None
    volatility_20: OptFloat = None
    zscore_20: OptFloat = None
    rsi_14: OptFloat = None
    volume_avg_20: OptFloat = None
    volume_ratio: OptFloat = None
    # long averages and the session references (previous close, today's open, 20-session range)
    sma_50: OptFloat = None
    sma_200: OptFloat = None
    ema_50: OptFloat = None
    ema_200: OptFloat = None
    prev_close: OptFloat = None
    session_open: OptFloat = None
    gap_pct: OptFloat = None
    high_20d: OptFloat = None
    low_20d: OptFloat = None
    #: folded from backfilled history (a ``HistoryBar``), not from live ticks: it warms every
    #: consumer's state (indicators, rule windows, forecast inputs, charts) but never fires an
    #: alert, since an alert is about now
    history: bool = False

    def __post_init__(self) -> None:
        _check_finite(self, BAR_FLOAT_FIELDS)
        if self.low > self.high:
            raise ValueError("`low` must not exceed `high`")

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


BAR_FLOAT_FIELDS = (
    "open", "high", "low", "close", "volume", "vwap", "change_pct", "sma_5", "sma_10",
    "sma_20", "ema_12", "ema_26", "macd", "volatility_20", "zscore_20", "rsi_14",
    "volume_avg_20", "volume_ratio", "sma_50", "sma_200", "ema_50", "ema_200", "prev_close", "session_open",
    "gap_pct", "high_20d", "low_20d",
)


class HistoryBar(Event, frozen=True, kw_only=True, tag="history_bar"):
    """One closed historical bar of a newly watched symbol, from the backfill. Topic ``history``,
    key ``symbol`` (co-partitioned with ``ticks``).

    The stream job folds it with the same state function as live bars and emits it to
    ``metrics`` as a ``Bar`` with ``history=True`` and the same deterministic id a live bar
    of that start would have; a history bar at or before a symbol's newest bar is dropped,
    so a repeated backfill changes nothing and history never replaces a live bar.
    ``id`` is ``history_bar_id(symbol, bar_seconds, start_ms)``; ``ts`` is the bar's end.
    """

    symbol: Symbol
    start_ms: EpochMs
    bar_seconds: Annotated[int, msgspec.Meta(gt=0)]
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NonNegative
    source: ShortText

    def __post_init__(self) -> None:
        _check_finite(self, ("open", "high", "low", "close", "volume"))
        if self.low > self.high:
            raise ValueError("`low` must not exceed `high`")
        if not self.low <= self.open <= self.high or not self.low <= self.close <= self.high:
            raise ValueError("`open` and `close` must lie within [`low`, `high`]")

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


FeedState = Literal["waiting", "streaming", "silent", "unavailable", "stopped"]


class FeedStatus(Event, frozen=True, kw_only=True, tag="feed_status"):
    """What ingest can say about one symbol's data. Topic ``feed`` (compacted), key ``symbol``.

    ``waiting``: followed, no tick yet; ``streaming``: ticks arrive; ``silent``: no tick for a while
    when the market is open; ``unavailable``: the source cannot serve it (``detail`` says why);
    ``stopped``: nobody watches it any more. ``id`` is ``feed_status_id(symbol, ts)``.
    """

    symbol: Symbol
    source: ShortText
    state: FeedState
    detail: Annotated[str, msgspec.Meta(max_length=300)] = ""
    last_tick_ms: EpochMs | None = None

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


class Watched(Event, frozen=True, kw_only=True, tag="watched"):
    """A symbol somebody watches (a watchlist holds it, or a rule names it or its watchlist).
    Topic ``watched`` (compacted), key ``symbol``; a tombstone (null value) means nobody does.

    ``watchers`` is how many distinct users watch it; ``id`` is ``watched_id(symbol, ts)``.
    Ingest reads the topic from the beginning and follows it.
    """

    symbol: Symbol
    watchers: Annotated[int, msgspec.Meta(ge=1)]

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


class Prediction(Event, frozen=True, kw_only=True, tag="prediction"):
    """A forecast of a symbol's close ``horizon_bars`` bars after the bar it is based on.

    Topic ``predictions``, key ``symbol``. ``lower``/``upper`` bound the ``interval_level`` prediction
    interval of the close; ``predicted_return`` is the log return from ``base_close``. ``skill`` is
    the model's validation skill against persistence (1 - MSE/MSE_persistence).
    ``id`` is ``prediction_id(symbol, base_start_ms, horizon_bars, model_version)``. The optional
    fields at the end say what the model was trained and evaluated on (bar size, data source, first
    and last bar start of training data and holdout, holdout size, two-sided Diebold-Mariano p-value
    of the skill against persistence); events written before they existed decode with them ``None``.
    """

    symbol: Symbol
    base_start_ms: EpochMs
    bar_seconds: Annotated[int, msgspec.Meta(gt=0)]
    horizon_bars: Annotated[int, msgspec.Meta(ge=1)] = 1
    base_close: Price
    predicted_close: Price
    predicted_return: float
    lower: Price
    upper: Price
    interval_level: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.8
    model_version: ShortText
    skill: OptFloat = None
    trained_bar_seconds: Annotated[int, msgspec.Meta(gt=0)] | None = None
    data_source: ShortText | None = None
    trained_from_ms: EpochMs | None = None
    trained_to_ms: EpochMs | None = None
    holdout_from_ms: EpochMs | None = None
    holdout_to_ms: EpochMs | None = None
    holdout_n: Annotated[int, msgspec.Meta(ge=0)] | None = None
    skill_p: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None

    def __post_init__(self) -> None:
        _check_finite(self, ("base_close", "predicted_close", "predicted_return", "lower", "upper", "skill"))
        if not self.lower <= self.upper:
            raise ValueError("`lower` must not exceed `upper`")

    @property
    def predicted_move_pct(self) -> float:
        return (self.predicted_close / self.base_close - 1.0) * 100.0

    @property
    def key(self) -> bytes:
        return self.symbol.encode()


# --- rules (the condition and its vocabulary: events/vocabulary.py) -------------------------


class Rule(Event, frozen=True, kw_only=True, tag="rule"):
    """Full definition of an alert rule. Topic ``rules`` (compacted), key ``rule_id``.

    A deleted rule is a tombstone (null value) under its key. ``version``
    increases with every change; alert ids depend on it.
    """

    rule_id: Annotated[int, msgspec.Meta(ge=1)]
    version: Annotated[int, msgspec.Meta(ge=1)]
    user_id: Annotated[int, msgspec.Meta(ge=1)]
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    symbols: Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=1000)]
    condition: Condition
    frequency: Frequency = "once_per_bar"
    cooldown_s: Annotated[int, msgspec.Meta(ge=0)] = 0
    pending_s: Annotated[int, msgspec.Meta(ge=0)] = 0
    recovery: OptFloat = None
    expires_ms: EpochMs | None = None
    enabled: bool = True
    snoozed_until_ms: EpochMs | None = None
    # [start, end) minutes after midnight in ``timezone``; None = all day
    active_from_min: Annotated[int, msgspec.Meta(ge=0, le=1440)] | None = None
    active_to_min: Annotated[int, msgspec.Meta(ge=0, le=1440)] | None = None
    timezone: ShortText = "America/New_York"
    channel_ids: list[int] = []
    message: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    notify_on_resolve: bool = False  # an all-clear to the channels when it resolves
    repeat_interval_s: Annotated[int, msgspec.Meta(ge=60, le=7 * 86_400)] | None = None  # reminder while firing

    @property
    def key(self) -> bytes:
        return str(self.rule_id).encode()


AlertState = Literal["firing", "resolved"]


class Alert(Event, frozen=True, kw_only=True, tag="alert"):
    """An alert fired or resolved by a rule, with the evidence. Topic ``alerts``, key ``rule_id``.

    ``id`` is ``alert_id(rule_id, rule_version, trigger_event_id, state)``: replaying the same
    input yields the same ids. ``rule_id`` 0 marks a system alert (stale feed) with ``user_id`` 0.
    """

    rule_id: Annotated[int, msgspec.Meta(ge=0)]
    rule_version: Annotated[int, msgspec.Meta(ge=0)]
    user_id: Annotated[int, msgspec.Meta(ge=0)]
    state: AlertState
    symbol: Symbol
    trigger_event_id: str
    series: ShortText
    op: ShortText
    value: OptFloat = None
    threshold: OptFloat = None
    message: Annotated[str, msgspec.Meta(max_length=8000)] = ""
    channel_ids: list[int] = []
    rule_name: str = ""
    # the series values known when it fired (price, close, open, ... and the condition's series)
    evidence: dict[str, float] = {}
    repeat: Annotated[int, msgspec.Meta(ge=0)] = 0  # n-th reminder while still firing; 0: the first notice
    condition: Condition | None = None  # a rule of several conditions: all of them (series/op: the matched one)

    @property
    def key(self) -> bytes:
        return str(self.rule_id).encode()


# --- topics ------------------------------------------------------------------------

TOPICS: dict[str, type[Event]] = {
    "ticks": Tick,
    "metrics": Bar,
    "predictions": Prediction,
    "rules": Rule,
    "alerts": Alert,
    "watched": Watched,
    "history": HistoryBar,
    "feed": FeedStatus,
}
_TOPIC_OF: dict[type[Event], str] = {cls: topic for topic, cls in TOPICS.items()}


def topic_of(event: Event | type[Event]) -> str:
    """The canonical topic name of an event (before any per-deployment prefix)."""
    cls = event if isinstance(event, type) else type(event)
    return _TOPIC_OF[cls]


# --- encode / decode -----------------------------------------------------------------

_encoder = msgspec.json.Encoder()
E = TypeVar("E", bound=Event)
_decoders: dict[type[Event], msgspec.json.Decoder[Any]] = {}


def encode(event: Event) -> bytes:
    """Serialise an event to JSON bytes (``type`` first)."""
    return _encoder.encode(event)


def decoder_for(cls: type[E]) -> msgspec.json.Decoder[E]:
    """A cached, reusable decoder for one event type (fastest path)."""
    dec = _decoders.get(cls)
    if dec is None:
        dec = _decoders[cls] = msgspec.json.Decoder(cls)
    return dec


def decode(data: bytes | None, cls: type[E]) -> E:
    """Decode and validate bytes as ``cls``; raises :class:`InvalidEvent` naming the field."""
    if data is None:
        raise InvalidEvent(f"empty message where a {cls.__name__} was expected")
    try:
        return decoder_for(cls).decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"invalid {cls.__name__}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"undecodable {cls.__name__}: {exc}") from None
