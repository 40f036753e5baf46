"""Message templates: sandboxed Jinja2 with the placeholders TradingView users know.

``{{ticker}}``, ``{{close}}``, ``{{open}}``, ``{{high}}``, ``{{low}}``,
``{{volume}}``, ``{{price}}``, ``{{time}}`` (ISO 8601 UTC of the trigger),
``{{timenow}}``, ``{{interval}}``, ``{{value}}``, ``{{threshold}}``,
``{{series}}``, ``{{op}}``, ``{{condition}}``, ``{{rule}}``, ``{{state}}``,
``{{alert_id}}``, ``{{chart_url}}``, ``{{summary}}`` (the alert in plain words),
``{{value_text}}`` and ``{{threshold_text}}`` (formatted for the series: ``1.71 %``),
``{{conditions}}`` (each condition in words), ``{{match}}`` (all or any), ``{{matched}}`` (the
condition an alert of ``any`` fired on) and every evidence series by name.
A template that fails to parse or render yields a plain fallback line
rather than an exception: a user's typo must not lose the alert.

Templates render in :class:`alerts.sandbox.BoundedEnvironment`: a render
that would take more than a few milliseconds, loop steps or megabytes stops
and falls back (the engine renders every user's messages in one process).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, Undefined, meta

from alerts.sandbox import BoundedEnvironment, TemplateBudgetExceeded, budget
# the plain words live in alerts.wording; re-exported here, where callers have always found them
from alerts.wording import (OP_WORDS, alert_summary, condition_text, conditions_text, describe, fmt_price,
                            fmt_value, matched_part, rule_number, series_label, series_unit, summary, window_words)
from events.contract import Alert

__all__ = ["OP_WORDS", "alert_context", "alert_summary", "condition_text", "conditions_text", "describe",
           "fmt_price", "fmt_value", "matched_part", "rule_number", "series_label", "series_unit", "summary",
           "render", "render_bounded", "render_json_body", "TemplateProblem", "validate_template", "window_words"]

_env = BoundedEnvironment(autoescape=False, undefined=Undefined)
MAX_OUTPUT = 16_000


class TemplateProblem(ValueError):
    """A template that does not compile (reported to the user when saving it)."""


@lru_cache(maxsize=1024)
def _compiled(source: str):  # type: ignore[no-untyped-def]
    return _env.compile_bounded(source)


@lru_cache(maxsize=1)
def _known_names() -> frozenset[str]:
    """Names a template may use besides the sample context's: every series of the vocabulary (an
    alert's evidence, present when its rule uses the series) and the sandbox's own globals."""
    from events.vocabulary import SERIES

    return frozenset({name.replace(".", "_") for name in SERIES} | set(_env.globals))


def validate_template(source: str, context: dict[str, Any] | None = None) -> None:
    """Raise :class:`TemplateProblem` if ``source`` is not a valid template, or (given a sample
    ``context``) if rendering it with that context does more work than a template may."""
    try:
        _env.instrumented(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template error: {exc}") from None
    if context is not None:
        unknown = sorted(meta.find_undeclared_variables(_env.parse(source)) - set(context) - _known_names())
        if unknown:  # a typo would otherwise render as nothing in every notification
            names = ", ".join("{{" + n + "}}" for n in unknown[:5])
            raise TemplateProblem(f"unknown placeholder {names}: the form lists the ones a message may use")
        try:
            render_bounded(source, context)
        except TemplateBudgetExceeded as exc:
            raise TemplateProblem(f"the template does too much: {exc}") from None
        except Exception:  # noqa: BLE001 - other errors depend on the alert's values; they fall back then
            pass


# Templates that went over budget once fall back at once after that: a hostile rule that fires on
# every bar of many symbols costs one budget per process, not one per alert.
_over_budget: OrderedDict[str, None] = OrderedDict()
_over_budget_lock = threading.Lock()
_OVER_BUDGET_KEPT = 1024


def _note_over_budget(source: str) -> None:
    with _over_budget_lock:
        _over_budget[source] = None
        _over_budget.move_to_end(source)
        while len(_over_budget) > _OVER_BUDGET_KEPT:
            _over_budget.popitem(last=False)


def _render_or_none(source: str, context: dict[str, Any], max_chars: int) -> str | None:
    if source in _over_budget:
        return None
    try:
        return render_bounded(source, context, max_chars)
    except TemplateBudgetExceeded:
        _note_over_budget(source)
        return None
    except Exception:  # noqa: BLE001 - any failure of a user's template falls back, never loses the alert
        return None


def iso_time(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert_context(alert: Alert, public_url: str = "", bar_seconds: int = 60,
                  evidence: dict[str, float] | None = None) -> dict[str, Any]:
    """Every placeholder for one alert."""
    ev = dict(evidence if evidence is not None else getattr(alert, "evidence", None) or {})
    ctx: dict[str, Any] = {name.replace(".", "_"): v for name, v in ev.items()}
    close = ev.get("close", ev.get("price"))
    ctx.update({
        "ticker": alert.symbol, "symbol": alert.symbol, "exchange": "",
        "close": close, "open": ev.get("open"), "high": ev.get("high"), "low": ev.get("low"),
        "volume": ev.get("volume"), "price": ev.get("price", close),
        "time": iso_time(alert.ts), "timenow": iso_time(int(datetime.now(timezone.utc).timestamp() * 1000)),
        "ts_ms": alert.ts, "interval": f"{bar_seconds}s",
        "value": alert.value, "threshold": alert.threshold, "series": alert.series, "op": alert.op,
        **_conditions(alert),
        "summary": alert_summary(alert),
        "value_text": fmt_value(alert.value, alert.series, alert.op),
        "threshold_text": fmt_value(alert.threshold, alert.series, alert.op),
        "rule": alert.rule_name, "rule_name": alert.rule_name, "rule_id": alert.rule_id,
        "state": alert.state, "alert_id": alert.id, "message": alert.message,
        "chart_url": f"{public_url}/symbols/{alert.symbol}" if public_url else "",
    })
    return ctx


def _conditions(alert: Alert) -> dict[str, Any]:
    """``condition`` (the rule in words: every condition of a rule of several, ``any of: a; b``),
    ``conditions`` (each in words), ``match`` (all or any) and ``matched`` (the one an alert of
    ``any`` fired on; empty otherwise)."""
    cond = alert.condition
    if cond is None or not cond.more:
        text = condition_text(alert.series, alert.op, alert.threshold, cond)
        return {"condition": text, "conditions": [text], "match": "all", "matched": ""}
    matched = describe(matched_part(cond, alert.series, alert.op, alert.threshold)) \
        if cond.match == "any" and alert.state == "firing" else ""
    return {"condition": conditions_text(cond), "conditions": [describe(p) for p in cond.parts()],
            "match": cond.match, "matched": matched}


def render_bounded(source: str, context: dict[str, Any], max_chars: int = MAX_OUTPUT) -> str:
    """Render ``source`` within the sandbox's budgets, keeping the first ``max_chars`` characters.

    Raises whatever the template raises (:class:`alerts.sandbox.TemplateBudgetExceeded` when it
    does too much). Output is pulled chunk by chunk, so a long one stops being produced at
    ``max_chars`` rather than being produced and then cut.
    """
    template = _compiled(source)  # outside the budget: compiling is bounded by the source's length
    with budget() as current:
        parts: list[str] = []
        size = 0
        stream = template.generate(context)
        try:
            for chunk in stream:
                parts.append(chunk)
                size += len(chunk)
                if size >= max_chars:
                    break
                current.check_time()
        finally:
            stream.close()
    return "".join(parts)[:max_chars]


def render(source: str, context: dict[str, Any], fallback: str = "") -> str:
    """Render ``source`` in the sandbox; on any template error or exceeded budget return ``fallback``."""
    if not source:
        return fallback
    out = _render_or_none(source, context, MAX_OUTPUT)
    return fallback if out is None else out


def sample_context() -> dict[str, Any]:
    """The placeholders of a made-up alert, to try a template on when it is saved."""
    alert = Alert(id="alert:sample", ts=1_795_000_000_000, rule_id=1, rule_version=1, user_id=1, state="firing",
                  symbol="AAPL", trigger_event_id="sample", series="price", op="greater_than", value=151.0,
                  threshold=150.0, rule_name="Sample", message="AAPL: price above 150",
                  evidence={"price": 151.0, "close": 151.0, "open": 149.0, "high": 152.0, "low": 148.5,
                            "volume": 1000.0})
    return alert_context(alert, "https://tickerbell.example")


def default_message(context: dict[str, Any]) -> str:
    """The message of an alert whose rule has none (or whose template failed): the plain summary."""
    return context.get("summary") or f"{context['ticker']}: {context['condition']}"


def render_json_body(source: str | None, context: dict[str, Any], default: dict[str, Any]) -> bytes:
    """A webhook body: the user's template (any text, usually JSON) or the default JSON document."""
    if source:
        out = _render_or_none(source, context, MAX_OUTPUT * 4)
        if out is not None:
            return out.encode()[:MAX_OUTPUT * 4]
    return json.dumps(default, separators=(",", ":")).encode()
