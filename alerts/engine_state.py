"""The rule engine's pure core: rule lifecycle, the symbol index, stale feeds.

:class:`Evaluator` holds the rules (indexed by symbol and by the kind of
event that updates their series) and the per-symbol state; ``on_tick``,
``on_bar`` and ``on_prediction`` return the :class:`~events.contract.Alert`
events an input causes. No I/O and no clock: every time is the event's
time, so a replay (the engine after a crash, the rule preview) gives the
same alerts with the same ids. ``check_stale(now_ms)`` is the one entry
that takes the wall clock, from the runner.

Lifecycle of one (rule, symbol): not firing -> firing (an ``alert`` event
with state ``firing``) -> resolved (state ``resolved``) when the condition
clears (past the recovery threshold, if any), carrying the rule's channels
only with ``notify_on_resolve``. A condition that stays true never fires
again, but with ``repeat_interval_s`` it reminds: a ``firing`` alert with
``repeat = n`` once that much event time has passed since the last notice
(state in ``RuleState``, so a restore neither repeats nor skips one). Firing is gated by: enabled, expiry, snooze, active
hours (rule's time zone), ``once`` (at most one firing ever), pending
period (the condition held for ``pending_s``), ``once_per_bar`` (at most
one firing per bar), cooldown (``cooldown_s`` since the last firing). A
condition that is true while a gate is closed fires when the gate opens, if
still true. ``once_per_bar_close`` rules are evaluated on bar closes only
(``price`` reads the bar's close).

A backfilled bar (``Bar.history``) only warms: it advances each rule's
condition memory (the previous side for a crossing, the window of a move), its
arming and its pending clock, with price rules reading the bar's close, but
never fires, resolves or touches the firing gates, since an alert is about
now. The first live observation then acts on a state that already knows the
past: a crossing whose "before" lies in the history fires on the first live
bar on the other side.
"""

from __future__ import annotations

from typing import Iterable

import msgspec

from alerts.conditions import bar_values, prediction_values
from alerts.engine_rule import CompiledRule, RuleState, in_active_hours
from alerts.templates import alert_context, default_message, render, summary
from events.contract import Alert, Bar, Prediction, Rule, Tick
from events.contract_ids import alert_id
from events.markethours import session_of, session_open_close

__all__ = ["CompiledRule", "Evaluator", "RuleState", "SymbolState", "decode_state", "encode_state",
           "in_active_hours"]

EVIDENCE_FIELDS = ("price", "open", "high", "low", "close", "volume")


class SymbolState(msgspec.Struct):
    """Everything the engine remembers about one symbol (one changelog record)."""

    values: dict[str, float | None] = {}
    rules: dict[int, RuleState] = {}
    last_tick_ms: int = 0
    last_tick_id: str = ""
    stale: bool = False
    stale_id: str = ""


class Evaluator:
    """Rules indexed by symbol and event kind, per-symbol state, and the lifecycle of each pair.

    ``dirty`` collects the symbols whose state changed since the runner last
    took it (the runner writes them to the changelog in the same transaction).
    """

    def __init__(self, bar_seconds: int = 60, public_url: str = "", stale_after_s: int = 0) -> None:
        self.bar_seconds = bar_seconds
        self.public_url = public_url
        self.stale_after_ms = stale_after_s * 1000
        self.rules: dict[int, CompiledRule] = {}
        # kind ("tick" | "bar" | "prediction") -> symbol -> rules evaluated on that event
        self.index: dict[str, dict[str, list[CompiledRule]]] = {"tick": {}, "bar": {}, "prediction": {}}
        self.symbols: dict[str, SymbolState] = {}
        self.watched: set[str] = set()
        self.dirty: set[str] = set()

    # --- rules -------------------------------------------------------------------------

    def upsert_rule(self, rule: Rule) -> None:
        """Add or replace a rule. Raises ConditionError (and changes nothing) for a nonsensical one.

        The same rule again (a republished outbox row, the topic re-read at start) changes
        nothing; a new version restarts the lifecycle of each (rule, symbol) at its next
        observation; a disabled rule is dropped with its state.
        """
        old = self.rules.get(rule.rule_id)
        if old is not None and old.rule == rule:
            return
        compiled = CompiledRule(rule, self.bar_seconds)
        if not rule.enabled:
            self.remove_rule(rule.rule_id)
            return
        if old is not None:
            self._unindex(old)
            self._drop_states(rule.rule_id, set(old.rule.symbols) - set(rule.symbols))
        self.rules[rule.rule_id] = compiled
        for kind in compiled.kinds:
            by_symbol = self.index[kind]
            for symbol in rule.symbols:
                by_symbol.setdefault(symbol, []).append(compiled)
        self.watched.update(rule.symbols)
        if old is not None:
            self.watched = {s for idx in self.index.values() for s in idx}

    def remove_rule(self, rule_id: int) -> None:
        """Forget a rule (a tombstone on ``rules``) and its state."""
        old = self.rules.get(rule_id)
        if old is None:
            return
        self._unindex(old)
        self._drop_states(rule_id, set(old.rule.symbols))
        self.watched = {s for idx in self.index.values() for s in idx}

    def _unindex(self, old: CompiledRule) -> None:
        rule_id = old.rule.rule_id
        self.rules.pop(rule_id, None)
        for kind in old.kinds:
            by_symbol = self.index[kind]
            for symbol in old.rule.symbols:
                lst = by_symbol.get(symbol)
                if lst is None:
                    continue
                lst[:] = [c for c in lst if c.rule.rule_id != rule_id]
                if not lst:
                    del by_symbol[symbol]

    def _drop_states(self, rule_id: int, symbols: set[str]) -> None:
        for symbol in symbols:
            st = self.symbols.get(symbol)
            if st is not None and st.rules.pop(rule_id, None) is not None:
                self.dirty.add(symbol)

    # --- inputs ------------------------------------------------------------------------

    def _symbol(self, symbol: str) -> SymbolState:
        st = self.symbols.get(symbol)
        if st is None:
            st = self.symbols[symbol] = SymbolState(values={}, rules={})
        return st

    def on_tick(self, tick: Tick) -> list[Alert]:
        symbol = tick.symbol
        if symbol not in self.watched:
            return []  # the cost of a tick nobody watches: one set lookup
        st = self._symbol(symbol)
        st.values["price"] = tick.price
        st.last_tick_ms = tick.ts
        st.last_tick_id = tick.id
        self.dirty.add(symbol)
        out: list[Alert] = []
        if st.stale:
            out.extend(self._stale_resolved(symbol, st, tick.ts, tick.id))
        rules = self.index["tick"].get(symbol)
        if rules:
            self._evaluate(rules, symbol, st, st.values, tick.ts, tick.id, out)
        return out

    def on_price(self, symbol: str, price: float, ts_ms: int, event_id: str) -> list[Alert]:
        """A price observation that is not a Tick (the preview replays bar closes through this)."""
        if symbol not in self.watched:
            return []
        st = self._symbol(symbol)
        st.values["price"] = price
        out: list[Alert] = []
        rules = self.index["tick"].get(symbol)
        if rules:
            self._evaluate(rules, symbol, st, st.values, ts_ms, event_id, out)
        return out

    def on_bar(self, bar: Bar) -> list[Alert]:
        symbol = bar.symbol
        if symbol not in self.watched:
            return []
        if bar.history:
            self._warm(bar)
            return []
        st = self._symbol(symbol)
        st.values.update(bar_values(bar))
        self.dirty.add(symbol)
        out: list[Alert] = []
        rules = self.index["bar"].get(symbol)
        if rules:
            plain = [c for c in rules if not c.on_close]
            closing = [c for c in rules if c.on_close]
            if plain:
                self._evaluate(plain, symbol, st, st.values, bar.ts, bar.id, out)
            if closing:  # evaluated at the bar's close: ``price`` is the close
                values = {**st.values, "price": bar.close}
                self._evaluate(closing, symbol, st, values, bar.ts, bar.id, out)
        return out

    def _warm(self, bar: Bar) -> None:
        """A backfilled bar: every rule on the symbol folds it (``price`` reads its close), none fires."""
        symbol = bar.symbol
        st = self._symbol(symbol)
        st.values.update(bar_values(bar))
        self.dirty.add(symbol)
        at_close = {**st.values, "price": bar.close}
        seen: set[int] = set()
        for kind in ("bar", "tick"):
            for compiled in self.index[kind].get(symbol, ()):
                rule = compiled.rule
                if rule.rule_id in seen:
                    continue
                seen.add(rule.rule_id)
                rs = st.rules.get(rule.rule_id)
                if rs is None or rs.version != rule.version:
                    rs = st.rules[rule.rule_id] = compiled.new_state()
                compiled.warm(rs, at_close, bar.ts)

    def on_prediction(self, pred: Prediction) -> list[Alert]:
        symbol = pred.symbol
        if symbol not in self.watched:
            return []
        st = self._symbol(symbol)
        st.values.update(prediction_values(pred))
        self.dirty.add(symbol)
        out: list[Alert] = []
        rules = self.index["prediction"].get(symbol)
        if rules:
            self._evaluate(rules, symbol, st, st.values, pred.ts, pred.id, out)
        return out

    def _evaluate(self, rules: Iterable[CompiledRule], symbol: str, st: SymbolState,
                  values: dict[str, float | None], ts_ms: int, event_id: str, out: list[Alert]) -> None:
        states = st.rules
        for compiled in rules:
            rule = compiled.rule
            rs = states.get(rule.rule_id)
            if rs is None or rs.version != rule.version:
                rs = states[rule.rule_id] = compiled.new_state()
            for state, value, threshold, part, repeat in compiled.step(rs, values, ts_ms):
                out.append(self._alert(compiled, symbol, values, state, value, threshold, ts_ms, event_id, repeat,
                                       part))
        self.dirty.add(symbol)

    def _alert(self, compiled: CompiledRule, symbol: str, values: dict[str, float | None], state: str,
               value: float, threshold: float | None, ts_ms: int, event_id: str, repeat: int = 0,
               part: int = 0) -> Alert:
        """The alert of one change. ``series``/``op`` are those of the condition ``part`` that
        ``value`` and ``threshold`` belong to (the one that matched, for any of several); a rule of
        several conditions carries them all (``condition``), so every message can list them."""
        rule = compiled.rule
        cond = rule.condition
        shown = cond.parts()[part] if cond.more else cond
        evidence = {k: v for k in (*EVIDENCE_FIELDS, *compiled.cond.series_names)
                    if (v := values.get(k)) is not None}
        alert = Alert(
            id=alert_id(rule.rule_id, rule.version, event_id, state if not repeat else f"repeat{repeat}"), ts=ts_ms,
            rule_id=rule.rule_id, rule_version=rule.version, user_id=rule.user_id, state=state,  # type: ignore[arg-type]
            symbol=symbol, trigger_event_id=event_id, series=shown.series, op=shown.op,
            value=value, threshold=threshold, rule_name=rule.name, evidence=evidence, repeat=repeat,
            # an all-clear reaches the channels only when the rule asks for it (off by default)
            channel_ids=list(rule.channel_ids) if state == "firing" or rule.notify_on_resolve else [],
            condition=cond if cond.more else None,
        )
        # the plain words, with what only the rule knows (window, channel bounds, compared series)
        plain = summary(symbol, shown.series, shown.op, value, threshold, state, cond, evidence)
        if state != "firing" or not rule.message:  # the common case, without building the template context
            message = plain
        else:
            ctx = alert_context(alert, self.public_url, self.bar_seconds)
            ctx["summary"] = plain
            message = render(rule.message, ctx, default_message(ctx))
        return msgspec.structs.replace(alert, message=message[:8000])

    # --- stale feed --------------------------------------------------------------------

    def check_stale(self, now_ms: int) -> list[Alert]:
        """System alerts for watched symbols without a tick for ``stale_after_s`` of a regular session.

        Silent outside regular sessions (weekends, holidays, half-day afternoons: the one
        calendar, ``events.markethours``). The staleness clock starts at the later of the last
        tick and this session's open, so the overnight gap never counts and the open never fires it.
        """
        if not self.stale_after_ms:
            return []
        day = session_of(now_ms)
        bounds = session_open_close(day) if day is not None else None
        if bounds is None:
            return []
        opened_ms = bounds[0]
        out: list[Alert] = []
        for symbol, st in self.symbols.items():
            if st.stale or not st.last_tick_ms or symbol not in self.watched:
                continue
            quiet_ms = now_ms - max(st.last_tick_ms, opened_ms)
            if quiet_ms >= self.stale_after_ms:
                st.stale = True
                st.stale_id = f"stale:{symbol}:{st.last_tick_id}"
                self.dirty.add(symbol)
                out.append(self._system_alert(symbol, "firing", st.stale_id, now_ms, quiet_ms / 1000,
                                              f"{symbol}: no ticks for {quiet_ms // 1000} s "
                                              "during market hours (stale feed)"))
        return out

    def _stale_resolved(self, symbol: str, st: SymbolState, ts_ms: int, event_id: str) -> list[Alert]:
        st.stale = False
        return [self._system_alert(symbol, "resolved", st.stale_id, ts_ms, 0.0, f"{symbol}: ticks are flowing again")]

    def _system_alert(self, symbol: str, state: str, trigger: str, ts_ms: int, age_s: float, message: str) -> Alert:
        """The stale-feed alert (rule 0, user 0): the dispatcher sends it, and its resolve, to every
        user who watches the symbol (``alerts.dispatch``)."""
        return Alert(
            id=alert_id(0, 0, trigger, state), ts=ts_ms, rule_id=0, rule_version=0, user_id=0,
            state=state, symbol=symbol, trigger_event_id=trigger, series="feed", op="stale",  # type: ignore[arg-type]
            value=age_s, threshold=self.stale_after_ms / 1000, message=message, rule_name="stale feed",
        )

    # --- changelog ---------------------------------------------------------------------

    def take_dirty(self) -> dict[str, SymbolState]:
        dirty, self.dirty = self.dirty, set()
        return {s: self.symbols[s] for s in dirty if s in self.symbols}

    def restore(self, symbol: str, state: SymbolState) -> None:
        self.symbols[symbol] = state


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(SymbolState)


def encode_state(state: SymbolState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> SymbolState:
    return _state_decoder.decode(data)

