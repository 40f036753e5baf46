"""The engine's and the dispatcher's settings section (``ALERTS_*``), read by the one loader
(:func:`events.settings.load_section`); ``python -m alerts`` takes its command-line defaults from it.
The notifier's section is :class:`alerts.retry.NotifyConfig`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Mapping

import pydantic.dataclasses
from pydantic import Field

from events.settings import SECTION, load_section

__all__ = ["EngineSettings", "load_engine_settings"]


@pydantic.dataclasses.dataclass(frozen=True, config=SECTION)
class EngineSettings:
    ENV_PREFIX: ClassVar[str] = "ALERTS_"
    #: system alert when a watched symbol has no tick for this long in market hours (0: off)
    stale_after_s: Annotated[int, Field(ge=0, le=7 * 86_400)] = 120
    #: the shortest time between two of the engine's transactions while input is below a full batch:
    #: each one costs the broker about 1.6 ms of CPU and the engine its round trips (0: one per poll)
    transaction_interval_ms: Annotated[int, Field(ge=0, le=1000)] = 20
    #: this instance's transactional.id and static group member id; unset: from ``DYNO``
    transactional_id: str = ""
    engine_group: str = "alerts-engine"
    dispatch_group: str = "alerts-dispatch"
    #: Heroku's dyno name (alerts.1, alerts.2, ...): stable across the instance's restarts
    dyno: str = Field(default="", validation_alias="DYNO")

    @property
    def engine_transactional_id(self) -> str:
        """One per instance, stable across its restarts: ``alerts-engine-alerts.1`` on Heroku."""
        return self.transactional_id or "alerts-engine" + (f"-{self.dyno}" if self.dyno else "")


def load_engine_settings(env: Mapping[str, str] | None = None) -> EngineSettings:
    return load_section(EngineSettings, env)
