"""One compiled rule and its lifecycle step: the per-(rule, symbol) state machine of the engine.

:class:`CompiledRule` is a contract ``Rule`` with its condition compiled
(``alerts.conditions``); :meth:`CompiledRule.step` advances one (rule, symbol)'s
:class:`RuleState` by one observation and says which alerts (firing, resolved) to emit,
behind the gates (enabled, expiry, snooze, once, pending, once per bar, cooldown, active
hours). Pure: no I/O and no clock. :class:`alerts.engine_state.Evaluator` holds these.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec

from alerts.conditions import (CHANNEL_OPS, COMPARE_OPS, DERIVED, DOWN_OPS, UP_OPS, CompiledCondition, CondState,
                               Observation)
from events.contract import Rule

__all__ = ["Change", "CompiledRule", "RuleState", "in_active_hours"]

#: one alert to emit: (state, value, threshold, part, repeat). ``value`` and ``threshold`` belong to
#: the condition ``part`` (its index in ``Condition.parts()``: the one that matched in a rule of any
#: of several, else the first); ``repeat`` is the reminder's number, 0 for a first notice or a resolve
Change = tuple[str, float, float | None, int, int]
#: returned (never mutated) when an observation changes nothing
NOTHING: list[Change] = []


class RuleState(msgspec.Struct, array_like=True):
    """Mutable lifecycle state of one (rule, symbol)."""

    version: int
    cond: CondState
    firing: bool = False
    armed: bool = False
    true_since_ms: int | None = None
    last_fire_ms: int | None = None
    last_fire_bar: int | None = None
    fired: int = 0
    fired_side: int = 0
    # reminders (``repeat_interval_s``): event time of the last notice (first or reminder) of the
    # firing in progress, and how many reminders it has had; changelogged with the rest
    last_notice_ms: int | None = None
    repeats: int = 0


def in_active_hours(ts_ms: int, tz: ZoneInfo, from_min: int | None, to_min: int | None) -> bool:
    """Whether ``ts_ms`` falls in [from, to) minutes after local midnight (wrapping past midnight)."""
    if from_min is None or to_min is None or from_min == to_min:
        return True
    local = datetime.fromtimestamp(ts_ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    if from_min < to_min:
        return from_min <= minute < to_min
    return minute >= from_min or minute < to_min


class CompiledRule:
    """A contract Rule with its compiled condition and the event kinds it is evaluated on."""

    __slots__ = ("rule", "cond", "kinds", "bar_ms", "tz", "recovery_dir", "_hours_cache", "on_close",
                 "fast", "series", "const", "lower", "upper", "up", "want_inside", "kind", "repeat_ms")

    def __init__(self, rule: Rule, bar_seconds: int) -> None:
        self.rule = rule
        self.cond = CompiledCondition(rule.condition, bar_seconds)
        self.on_close = rule.frequency == "once_per_bar_close"
        self.kinds = frozenset({"bar"}) if self.on_close else self.cond.sources
        self.bar_ms = bar_seconds * 1000
        self.tz = ZoneInfo(rule.timezone)
        op = rule.condition.op
        self.recovery_dir = 1 if op in UP_OPS else -1 if op in DOWN_OPS else 0
        self._hours_cache: tuple[int, bool] = (-1, True)
        self.repeat_ms = (rule.repeat_interval_s or 0) * 1000
        # the hot path: a series against a constant or a fixed channel, with nothing attached, is
        # evaluated inline without building an Observation unless something may happen
        c = rule.condition
        self.kind = self.cond.kind
        self.series = c.series
        self.const = c.value
        self.lower, self.upper = c.lower, c.upper
        self.up = op in ("greater_than", "crossing_up")
        self.want_inside = op in ("inside_channel", "entering_channel")
        self.fast = 0
        # only one plain condition on a stored series: several conditions and derived series
        # (the day's change, computed from the price and the bar's references) take observe()
        # and no reminders: a firing that holds must reach advance(), which says when one is due
        simple = c.also is None and not c.more and c.series not in DERIVED and not self.repeat_ms
        if simple and op in COMPARE_OPS and c.other is None:
            self.fast = 1
        elif simple and op in CHANNEL_OPS:
            self.fast = 2

    def active_hours(self, ts_ms: int) -> bool:
        r = self.rule
        if r.active_from_min is None or r.active_to_min is None:
            return True
        minute_key = ts_ms // 60_000
        if self._hours_cache[0] != minute_key:
            self._hours_cache = (minute_key, in_active_hours(ts_ms, self.tz, r.active_from_min, r.active_to_min))
        return self._hours_cache[1]

    def new_state(self) -> RuleState:
        return RuleState(version=self.rule.version, cond=self.cond.new_state())

    def gates_open(self, st: RuleState, ts_ms: int) -> bool:
        r = self.rule
        if not r.enabled:
            return False
        if r.expires_ms is not None and ts_ms >= r.expires_ms:
            return False
        if r.snoozed_until_ms is not None and ts_ms < r.snoozed_until_ms:
            return False
        if r.frequency == "once" and st.fired:
            return False
        if r.pending_s and self.cond.kind != "cross" and st.true_since_ms is not None \
                and ts_ms - st.true_since_ms < r.pending_s * 1000:
            return False
        if r.frequency in ("once_per_bar", "once_per_bar_close") and st.last_fire_bar == ts_ms // self.bar_ms:
            return False
        if r.cooldown_s and st.last_fire_ms is not None and ts_ms - st.last_fire_ms < r.cooldown_s * 1000:
            return False
        return self.active_hours(ts_ms)

    def remind(self, st: RuleState, ts_ms: int) -> int:
        """The reminder due at ``ts_ms`` while firing: its number (1, 2, ...), else 0.

        Due once ``repeat_interval_s`` of event time has passed since the last notice; the
        interval then restarts at this observation. A reminder waits while the rule is
        snoozed, expired or outside its active hours (cooldown and frequency gate only the
        first notice).
        """
        last = st.last_notice_ms if st.last_notice_ms is not None else st.last_fire_ms
        if last is None or ts_ms - last < self.repeat_ms:
            return 0
        r = self.rule
        if (r.snoozed_until_ms is not None and ts_ms < r.snoozed_until_ms) \
                or (r.expires_ms is not None and ts_ms >= r.expires_ms) or not self.active_hours(ts_ms):
            return 0
        st.last_notice_ms = ts_ms
        st.repeats += 1
        return st.repeats

    def step(self, st: RuleState, values: dict[str, float | None], ts_ms: int) -> list[Change]:
        """Advance the lifecycle by one observation; return the alerts to emit as :data:`Change`\ s.

        The inline fast path (one plain condition, see ``fast``) decides "nothing happens" without
        building an :class:`Observation`; compare and channel share its one tail below."""
        fast = self.fast
        if not fast:
            observed = self.cond.observe(values, st.cond, ts_ms)
            if observed is None:
                return NOTHING
            return self.advance(st, observed, ts_ms)
        a = values.get(self.series)
        if a is None:
            return NOTHING
        kind = self.kind
        if fast == 1:
            b = self.const
            cs = st.cond
            prev = cs.side
            side = 1 if a > b else -1 if a < b else prev  # type: ignore[operator]
            cs.side = side
            cross = prev != 0 and side != prev
            if kind == "cross":
                if st.firing:
                    if side == st.fired_side:
                        return NOTHING
                elif not cross:
                    st.true_since_ms = None
                    return NOTHING
                return self.advance(st, Observation(cross, cross, side, a, b, a), ts_ms)
            active = a > b if self.up else a < b  # type: ignore[operator]
        else:
            inside = self.lower <= a <= self.upper  # type: ignore[operator]
            active = inside if self.want_inside else not inside
        # the one tail of compare and channel: a firing that holds, or a quiet one, changes nothing
        if st.firing:
            if active:
                return NOTHING
        elif not active:
            if kind == "armed":
                st.armed = True
            st.true_since_ms = None
            return NOTHING
        if fast == 2:  # a channel reports its nearer bound
            lo, hi = self.lower, self.upper
            b = hi if a >= (lo + hi) / 2 else lo  # type: ignore[operator]
            return self.advance(st, Observation(active, False, 0, a, b, a), ts_ms)
        return self.advance(st, Observation(active, cross, side, a, b, a), ts_ms)

    def warm(self, st: RuleState, values: dict[str, float | None], ts_ms: int) -> None:
        """Fold a history observation into the condition state; never a firing or a resolution.

        The same condition memory :meth:`step` keeps (``observe`` updates the side and the
        move window exactly as the fast path does) and the pending clock of a level
        condition (how long it has held); the lifecycle (firing, fired, cooldown,
        once-per-bar) is left alone. An armed operator is armed by an opposite
        observation, and disarmed again by a crossing inside the history: that crossing
        is over, so only a crossing after the history fires.
        """
        obs = self.cond.observe(values, st.cond, ts_ms)
        if obs is None or st.firing:
            return
        kind = self.cond.kind
        if kind == "level" and obs.active:
            if st.true_since_ms is None:
                st.true_since_ms = ts_ms
            return
        if kind == "armed":
            st.armed = not obs.active
        st.true_since_ms = None

    def advance(self, st: RuleState, obs: Observation, ts_ms: int) -> list[Change]:
        """The lifecycle transition for one observation (the general path): a firing that still holds
        may be due a reminder (:meth:`remind`), with this observation's value."""
        out: list[Change] = []
        kind = self.cond.kind
        if st.firing:
            holds = obs.side == st.fired_side if kind == "cross" else obs.active
            if holds:
                n = self.remind(st, ts_ms) if self.repeat_ms else 0
                if n:
                    out.append(("firing", obs.value, obs.threshold, obs.part, n))
                return out
            recovery = self.rule.recovery
            if recovery is not None and self.recovery_dir:
                a = obs.series_value
                if (self.recovery_dir > 0 and a > recovery) or (self.recovery_dir < 0 and a < recovery):
                    return out  # not yet past the recovery threshold (hysteresis)
            st.firing = False
            st.true_since_ms = None
            st.last_notice_ms = None
            st.repeats = 0
            out.append(("resolved", obs.value, obs.threshold, obs.part, 0))
        if kind == "armed":
            if not obs.active:
                st.armed = True
            eligible = obs.active and st.armed
        elif kind == "cross":
            eligible = obs.cross
        else:
            eligible = obs.active
        if not eligible:
            st.true_since_ms = None
            return out
        if st.true_since_ms is None:
            st.true_since_ms = ts_ms
        if self.gates_open(st, ts_ms):
            st.firing = True
            st.armed = False
            st.fired += 1
            st.fired_side = obs.side
            st.last_fire_ms = ts_ms
            st.last_fire_bar = ts_ms // self.bar_ms
            st.true_since_ms = None
            st.last_notice_ms = ts_ms
            st.repeats = 0
            out.append(("firing", obs.value, obs.threshold, obs.part, 0))
        return out
