"""SQLAlchemy 2 models: the durable tables and the read projections.

Durable (owned by the web app): users, api tokens, watchlists, rules (+ the
transactional outbox that publishes them to ``rules``), channels, deliveries.
Projections (rebuilt by replaying topics): bars, predictions, alert history.
Times in projections are epoch milliseconds (``*_ms``) as in the events.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    #: rotated at logout and password change: a remember-me cookie or session signed with an
    #: older nonce no longer logs anyone in
    auth_nonce: Mapped[str] = mapped_column(String(64), default="")
    #: set when the owner followed the sign-up link (or an operator made the account); until then
    #: the account cannot log in
    email_confirmed_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    watchlists: Mapped[list["Watchlist"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    """A bearer token for the REST API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class Watchlist(Base):
    __tablename__ = "watchlists"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship(back_populates="watchlists")
    symbols: Mapped[list["WatchlistSymbol"]] = relationship(
        back_populates="watchlist", cascade="all, delete-orphan", order_by="WatchlistSymbol.position"
    )


class WatchlistSymbol(Base):
    __tablename__ = "watchlist_symbols"
    __table_args__ = (UniqueConstraint("watchlist_id", "symbol"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id", ondelete="CASCADE"), index=True)
    symbol: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer, default=0)

    watchlist: Mapped[Watchlist] = relationship(back_populates="symbols")


class Channel(Base):
    """A notification destination: ``email`` (target = address), ``slack`` or ``webhook`` (target = URL)."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[Optional[str]] = mapped_column(String(200))  # webhook signing secret (whsec_...)
    body_template: Mapped[Optional[str]] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failing_since: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[Optional[str]] = mapped_column(String(500))
    #: when the owner proved the target is theirs (email: a signed link); an unconfirmed
    #: email channel receives nothing but the confirmation mail
    confirmed_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Rule(Base):
    """An alert rule. Every change bumps ``version`` and writes an :class:`OutboxEvent` in the same transaction."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    symbol: Mapped[Optional[str]] = mapped_column(String(16))
    watchlist_id: Mapped[Optional[int]] = mapped_column(ForeignKey("watchlists.id", ondelete="SET NULL"))
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    frequency: Mapped[str] = mapped_column(String(32), default="once_per_bar")
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0)
    pending_s: Mapped[int] = mapped_column(Integer, default=0)
    recovery: Mapped[Optional[float]] = mapped_column(Float)
    expires_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    snoozed_until: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    active_from_min: Mapped[Optional[int]] = mapped_column(Integer)
    active_to_min: Mapped[Optional[int]] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    message: Mapped[str] = mapped_column(Text, default="")
    #: also tell the rule's channels when the alert resolves (off by default, as TradingView)
    notify_on_resolve: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: remind every this many seconds while the alert stays firing (Alertmanager's repeat_interval)
    repeat_interval_s: Mapped[Optional[int]] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    channels: Mapped[list[Channel]] = relationship(secondary="rule_channels")


class RuleChannel(Base):
    __tablename__ = "rule_channels"

    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)


class WatchedSymbol(Base):
    """The demand last announced on the ``watched`` topic (see events.demand): one row per
    symbol that any watchlist or rule watches, with how many users watch it."""

    __tablename__ = "watched_symbols"

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    watchers: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class OutboxEvent(Base):
    """A message to publish, written in the same transaction as the change it announces.

    ``value`` None is a tombstone. The relay publishes unpublished rows in
    ``id`` order and sets ``published_at``.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """One (alert, channel) pair: sent at most once. Retries are scheduled by ``next_attempt_at``."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "channel_id"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(100))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sending|delivered|failed|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    payload: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    #: the message this delivery made at the receiver, where it can be updated in place
    #: (Slack bot: "<channel>:<ts>"), so the resolve edits it instead of posting again
    external_ref: Mapped[Optional[str]] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    attempt_log: Mapped[list["DeliveryAttempt"]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="DeliveryAttempt.number"
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[Optional[int]] = mapped_column(Integer)
    error: Mapped[Optional[str]] = mapped_column(Text)
    duration_ms: Mapped[Optional[float]] = mapped_column(Float)

    delivery: Mapped[Delivery] = relationship(back_populates="attempt_log")


# --- projections ---------------------------------------------------------------------


class AlertRecord(Base):
    """Projection of the ``alerts`` topic (history shown in the UI)."""

    __tablename__ = "alert_history"
    __table_args__ = (Index("ix_alert_history_user_ts", "user_id", "ts_ms"), Index("ix_alert_history_symbol_ts", "symbol", "ts_ms"))

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    rule_id: Mapped[int] = mapped_column(Integer, index=True)
    rule_version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    series: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(64))
    value: Mapped[Optional[float]] = mapped_column(Float)
    threshold: Mapped[Optional[float]] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text, default="")
    trigger_event_id: Mapped[str] = mapped_column(String(200))
    #: the series values known when it fired (``Alert.evidence``): the charts mark the price it fired at
    evidence: Mapped[Optional[dict[str, float]]] = mapped_column(JSON)


class BarRecord(Base):
    """Projection of the ``metrics`` topic."""

    __tablename__ = "bars"

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    bar_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    vwap: Mapped[float] = mapped_column(Float)
    change_pct: Mapped[Optional[float]] = mapped_column(Float)
    sma_5: Mapped[Optional[float]] = mapped_column(Float)
    sma_10: Mapped[Optional[float]] = mapped_column(Float)
    sma_20: Mapped[Optional[float]] = mapped_column(Float)
    ema_12: Mapped[Optional[float]] = mapped_column(Float)
    ema_26: Mapped[Optional[float]] = mapped_column(Float)
    macd: Mapped[Optional[float]] = mapped_column(Float)
    volatility_20: Mapped[Optional[float]] = mapped_column(Float)
    zscore_20: Mapped[Optional[float]] = mapped_column(Float)
    rsi_14: Mapped[Optional[float]] = mapped_column(Float)
    volume_avg_20: Mapped[Optional[float]] = mapped_column(Float)
    volume_ratio: Mapped[Optional[float]] = mapped_column(Float)
    sma_50: Mapped[Optional[float]] = mapped_column(Float)
    sma_200: Mapped[Optional[float]] = mapped_column(Float)
    ema_50: Mapped[Optional[float]] = mapped_column(Float)
    ema_200: Mapped[Optional[float]] = mapped_column(Float)
    prev_close: Mapped[Optional[float]] = mapped_column(Float)
    session_open: Mapped[Optional[float]] = mapped_column(Float)
    gap_pct: Mapped[Optional[float]] = mapped_column(Float)
    high_20d: Mapped[Optional[float]] = mapped_column(Float)
    low_20d: Mapped[Optional[float]] = mapped_column(Float)
    history: Mapped[bool] = mapped_column(Boolean, default=False)  # folded from backfilled history


class FeedStatusRecord(Base):
    """Projection of the ``feed`` topic: what ingest last said about a symbol's data."""

    __tablename__ = "feed_status"

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(300), default="")
    last_tick_ms: Mapped[Optional[int]] = mapped_column(BigInteger)
    ts_ms: Mapped[int] = mapped_column(BigInteger)


#: what a prediction says about its model's training and evaluation (events.contract.Prediction)
PREDICTION_RECORD_FIELDS = ("trained_bar_seconds", "data_source", "trained_from_ms", "trained_to_ms",
                            "holdout_from_ms", "holdout_to_ms", "holdout_n", "skill_p")


class PredictionRecord(Base):
    """Projection of the ``predictions`` topic."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_symbol_base", "symbol", "base_start_ms"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    base_start_ms: Mapped[int] = mapped_column(BigInteger)
    bar_seconds: Mapped[int] = mapped_column(Integer)
    horizon_bars: Mapped[int] = mapped_column(Integer)
    base_close: Mapped[float] = mapped_column(Float)
    predicted_close: Mapped[float] = mapped_column(Float)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    interval_level: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(64))
    skill: Mapped[Optional[float]] = mapped_column(Float)
    # what the model was trained and evaluated on (None for predictions older than the fields)
    trained_bar_seconds: Mapped[Optional[int]] = mapped_column(Integer)
    data_source: Mapped[Optional[str]] = mapped_column(String(64))
    trained_from_ms: Mapped[Optional[int]] = mapped_column(BigInteger)
    trained_to_ms: Mapped[Optional[int]] = mapped_column(BigInteger)
    holdout_from_ms: Mapped[Optional[int]] = mapped_column(BigInteger)
    holdout_to_ms: Mapped[Optional[int]] = mapped_column(BigInteger)
    holdout_n: Mapped[Optional[int]] = mapped_column(Integer)
    skill_p: Mapped[Optional[float]] = mapped_column(Float)


class ForecastScoreRecord(Base):
    """Projection of ``predictions`` joined with ``metrics``: one served prediction scored against the
    bar it forecast (``predict.scoreboard.Score``), written when the later of the two arrives."""

    __tablename__ = "forecast_scores"
    __table_args__ = (Index("ix_forecast_scores_symbol_model_target", "symbol", "model_version", "target_start_ms"),)

    prediction_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16))
    bar_seconds: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str] = mapped_column(String(64))
    base_start_ms: Mapped[int] = mapped_column(BigInteger)
    target_start_ms: Mapped[int] = mapped_column(BigInteger)
    interval_level: Mapped[float] = mapped_column(Float)
    actual_close: Mapped[float] = mapped_column(Float)
    error: Mapped[float] = mapped_column(Float)
    error_return: Mapped[float] = mapped_column(Float)
    persistence_error_return: Mapped[float] = mapped_column(Float)
    covered: Mapped[bool] = mapped_column(Boolean)
    direction_hit: Mapped[Optional[bool]] = mapped_column(Boolean)
    up_hit: Mapped[Optional[bool]] = mapped_column(Boolean)
    last_move_hit: Mapped[Optional[bool]] = mapped_column(Boolean)
