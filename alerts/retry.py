"""Delivery retry policy (pure): which outcomes retry, and when the next attempt is due.

The schedule is Svix's: the first attempt at once, then 5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 10 h after each failure, each delay with +-20 % jitter; a
``Retry-After`` from the receiver is honoured (the delay is at least that).
The schedule lives in :class:`NotifyConfig` so tests can run a fast one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Annotated, ClassVar, Mapping

import pydantic.dataclasses
from pydantic import Field

from events.settings import SECTION, QueueName, Seconds, SecondsList, StrictBool, load_section

__all__ = ["NotifyConfig", "Outcome", "SVIX_SCHEDULE_S", "classify_status", "next_delay_s", "parse_retry_after",
           "load_notify_config"]

SVIX_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_RETRY_AFTER_S = 86_400.0


@pydantic.dataclasses.dataclass(frozen=True, config=SECTION)
class NotifyConfig:
    """How the notifier retries and sweeps: the ``ALERTS_*`` settings section (read once by the worker)."""

    ENV_PREFIX: ClassVar[str] = "ALERTS_"
    #: ALERTS_RETRY_SCHEDULE: comma-separated seconds
    retry_schedule_s: SecondsList = Field(
        default=SVIX_SCHEDULE_S, validation_alias="ALERTS_RETRY_SCHEDULE")
    jitter: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        default=0.2, validation_alias="ALERTS_RETRY_JITTER")
    sweep_interval_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 5.0
    lease_s: Seconds = 120.0              # a 'sending' row older than this is presumed lost with its worker
    countdown_max_s: Seconds = 60.0       # shorter delays are also queued with a Celery countdown
    http_timeout_s: Seconds = 10.0
    smtp_timeout_s: Seconds = 15.0
    disable_after_s: Seconds = 3 * 86_400.0  # a channel failing this long is disabled and its user told
    queue: QueueName = "alerts"
    digest: StrictBool = False            # group one user's alerts per channel into digests
    digest_window_s: Seconds = 30.0       # alerts arriving within this window of the first go out together


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    gone: bool = False  # 410: the receiver says the endpoint no longer exists


def classify_status(status_code: int, retry_after_s: float | None = None) -> Outcome:
    """2xx ok; 5xx, 429 (and 408) retry; 410 gone; any other code fails for good."""
    if 200 <= status_code < 300:
        return Outcome(True, status_code)
    if status_code >= 500 or status_code in (429, 408):
        return Outcome(False, status_code, f"HTTP {status_code}", retryable=True, retry_after_s=retry_after_s)
    return Outcome(False, status_code, f"HTTP {status_code}", retryable=False, gone=status_code == 410)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_s
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def next_delay_s(attempts_done: int, config: NotifyConfig, retry_after_s: float | None = None,
                 rng: random.Random | None = None) -> float | None:
    """Delay before the next attempt after ``attempts_done`` failed ones; None when retries are exhausted."""
    schedule = config.retry_schedule_s
    if attempts_done >= len(schedule):
        return None
    base = schedule[attempts_done]
    jitter = (rng or random).uniform(-config.jitter, config.jitter) if config.jitter else 0.0
    delay = base * (1.0 + jitter)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def load_notify_config(env: Mapping[str, str] | None = None) -> NotifyConfig:
    """The ``ALERTS_*`` section (``ALERTS_RETRY_SCHEDULE``, ``ALERTS_RETRY_JITTER``, ``ALERTS_SWEEP_INTERVAL_S``,
    ...; field ``x`` is ``ALERTS_X``). Raises :class:`~events.settings.SettingsError` (a ValueError) naming
    every bad variable."""
    return load_section(NotifyConfig, env)
