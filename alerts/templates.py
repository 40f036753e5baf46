"""Message templates: sandboxed Jinja2 with the placeholders TradingView users know.

``{{ticker}}``, ``{{close}}``, ``{{open}}``, ``{{high}}``, ``{{low}}``,
``{{volume}}``, ``{{price}}``, ``{{time}}`` (ISO 8601 UTC of the trigger),
``{{timenow}}``, ``{{interval}}``, ``{{value}}``, ``{{threshold}}``,
``{{series}}``, ``{{op}}``, ``{{condition}}``, ``{{rule}}``, ``{{state}}``,
``{{alert_id}}``, ``{{chart_url}}``, ``{{summary}}`` (the alert in plain words),
``{{value_text}}`` and ``{{threshold_text}}`` (formatted for the series: ``1.71 %``)
and every evidence series by name.
A template that fails to parse or render yields a plain fallback line
rather than an exception: a user's typo must not lose the alert.

Templates render in :class:`alerts.sandbox.BoundedEnvironment`: a render
that would take more than a few milliseconds, loop steps or megabytes stops
and falls back (the engine renders every user's messages in one process).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError, Undefined

from alerts.sandbox import BoundedEnvironment, TemplateBudgetExceeded, budget
from events.contract import Alert, Condition
from events.vocabulary import OPERATORS, SERIES, unit_of

__all__ = ["alert_context", "alert_summary", "condition_text", "describe", "fmt_value", "summary", "render", "render_bounded", "render_json_body", "TemplateProblem", "validate_template"]

_env = BoundedEnvironment(autoescape=False, undefined=Undefined)
MAX_OUTPUT = 16_000

#: how a message says each operator, from the vocabulary (events/vocabulary.py)
OP_WORDS = {name: o.words for name, o in OPERATORS.items()}


class TemplateProblem(ValueError):
    """A template that does not compile (reported to the user when saving it)."""


@lru_cache(maxsize=1024)
def _compiled(source: str):  # type: ignore[no-untyped-def]
    return _env.compile_bounded(source)


def validate_template(source: str, context: dict[str, Any] | None = None) -> None:
    """Raise :class:`TemplateProblem` if ``source`` is not a valid template, or (given a sample
    ``context``) if rendering it with that context does more work than a template may."""
    try:
        _env.instrumented(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template error: {exc}") from None
    if context is not None:
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


# --- plain words: what an alert says, its numbers formatted for its series -----------------------
#
# The unit of a number follows from the series and the operator alone (both travel on every Alert):
# a move in percent (``moving_*_pct``) is in percent whatever the series; otherwise the series'
# unit in the vocabulary says. Names the vocabulary does not know (the stale-feed alert's ``feed``,
# a series an older engine does not know yet) are read by pattern.
# web/static/app.js (TB.fmt.alertValue) follows the same rules for the pages.

_LABEL_PREFIXES = (("sma_", "SMA "), ("ema_", "EMA "), ("rsi_", "RSI "), ("volatility_", "volatility "),
                   ("zscore_", "z-score "), ("volume_avg_", "average volume "))


def series_label(series: str) -> str:
    """How a series is named in a sentence: ``RSI 14``, ``SMA 50``; the price itself goes unnamed."""
    known = SERIES.get(series)
    if known is not None:
        return known.label
    for prefix, label in _LABEL_PREFIXES:
        if series.startswith(prefix):
            return label + series[len(prefix):]
    return series.replace("_", " ")


def series_unit(series: str, op: str = "") -> str:
    """``percent``, ``volume``, ``count``, ``ratio``, ``index`` (0-100 oscillators), ``seconds`` or ``price``."""
    unit = unit_of(series, op)
    if unit is not None:
        return unit
    if series.endswith("_pct") or series.startswith("volatility_"):
        return "percent"
    if series.startswith("volume_avg_"):
        return "volume"
    if series.startswith("zscore_"):
        return "ratio"
    if series.startswith("rsi_"):
        return "index"
    if series == "feed":
        return "seconds"
    return "price"


def fmt_price(value: float) -> str:
    """2 decimals from 1 up; below 1, four significant digits (a 0.8709 stock is not 0.87)."""
    if value == 0 or abs(value) >= 1:
        return f"{value:,.2f}"
    text = f"{value:.{max(2, 3 - math.floor(math.log10(abs(value))))}f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.partition(".")[2]))


def fmt_value(value: float | None, series: str, op: str = "") -> str:
    """``value`` of an alert on ``series`` under ``op``, formatted for its unit: ``1.71 %``,
    ``250.00``, ``12,345``, ``3.10``, ``28.4``; ``n/a`` when unknown."""
    if value is None or not math.isfinite(value):
        return "n/a"
    unit = series_unit(series, op)
    if unit == "percent":
        return f"{value:.2f} %"
    if unit in ("volume", "count"):
        return f"{value:,.0f}"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "index":
        return f"{value:.1f}".removesuffix(".0")
    if unit == "seconds":
        return window_words(seconds=value)
    return fmt_price(value)


def rule_number(value: float | None, series: str, op: str = "") -> str:
    """A rule's own number as its author typed it (``250``, ``0.2 %``), not padded to 2 decimals."""
    if value is None:
        return "n/a"
    text = f"{int(value):,}" if value.is_integer() and abs(value) < 1e15 else f"{value:,g}"
    return text + " %" if series_unit(series, op) == "percent" else text


def window_words(seconds: float | None = None, bars: int | None = None) -> str:
    """``1 min``, ``90 s``, ``2 h``, ``1 d``, ``5 bars``, ``1 bar``."""
    if bars is not None:
        return f"{bars} bar" + ("" if bars == 1 else "s")
    if seconds is None:
        return ""
    whole = int(round(seconds))
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size} {unit}"
    return f"{whole} s"


def condition_text(series: str, op: str, threshold: float | None, condition: Condition | None = None) -> str:
    """The rule in words: ``price crossing up 250``, ``RSI 14 below 30``, ``price up at least 0.2 %
    in 1 min``, ``z-score 20 outside -3..3``. Without ``condition`` (an Alert alone), a channel is
    named by its nearer bound and a move by its size only."""
    name = series_label(series) or "price"
    words = OP_WORDS.get(op, op.replace("_", " "))
    if condition is not None and condition.other is not None:
        text = f"{name} {words} {series_label(condition.other) or 'price'}"
    elif condition is not None and condition.lower is not None and condition.upper is not None:
        text = f"{name} {words} {condition.lower:g}..{condition.upper:g}"
    elif _group(op) == "channel":
        text = f"{name} {words} the channel"
    else:
        text = f"{name} {words} {rule_number(threshold, series, op)}"
    window = _window_of(condition)
    return f"{text} in {window}" if window and _group(op) == "move" else text


def _group(op: str) -> str:
    known = OPERATORS.get(op)
    return known.group if known is not None else ""


def _rises(op: str) -> bool:
    """A move operator that measures a rise (its words say ``up``)."""
    return OP_WORDS.get(op, "").startswith("up")


def describe(condition: Condition) -> str:
    """A condition in words, ``also`` included: ``SMA 5 crossing up SMA 20``, ``price down at least
    3 % in 1 h and RSI 14 below 30``. The pages, the API's ``description`` and the CLIs show this."""
    if condition.more:  # several conditions: "price above 200 and RSI 14 below 30" ("or" for any)
        return f" {'or' if condition.match == 'any' else 'and'} ".join(describe(p) for p in condition.parts())
    text = condition_text(condition.series, condition.op, condition.value, condition)
    return text if condition.also is None else f"{text} and {describe(condition.also)}"


def _window_of(condition: Condition | None) -> str:
    if condition is None:
        return ""
    return window_words(seconds=condition.window_s, bars=condition.window_bars) if (
        condition.window_s or condition.window_bars) else ""


def summary(symbol: str, series: str, op: str, value: float | None, threshold: float | None,
            state: str = "firing", condition: Condition | None = None) -> str:
    """One sentence that says what happened, for a subject, a first line, a Slack text:
    ``AAPL up 1.71 % in 1 min (rule: at least 0.2 %)``, ``AAPL crossed above 250.00 (rule: price
    crossing up 250)``, ``AAPL RSI 14 at 28.4, crossing under 30 (rule: RSI 14 crossing down 30)``.
    ``condition`` (the rule's, where the caller has it: the engine) adds the window, the channel's
    bounds and the name of a compared series."""
    if series == "feed":  # the stale-feed system alert: value is the silence, threshold the limit
        if state != "firing":
            return f"{symbol}: ticks are flowing again"
        return f"{symbol}: no ticks for {fmt_value(value, series)} (limit {fmt_value(threshold, series)})"
    if condition is not None and condition.more:  # several conditions: the rule in words says it
        return f"{symbol}: {describe(condition)}" if state == "firing" else \
            f"{symbol} resolved: {describe(condition)} no longer holds"
    label = series_label(series)
    subject = f"{symbol} {label}".rstrip()
    rule = condition_text(series, op, threshold, condition)
    now = fmt_value(value, series, op)
    if condition is not None and condition.other is not None:
        level = f"{series_label(condition.other) or 'price'} at {fmt_value(threshold, condition.other)}"
    else:
        level = fmt_value(threshold, series, op)
    if state != "firing":
        at = f"now {'up' if _rises(op) else 'down'} {now}" if _group(op) == "move" \
            else f"now {now}"
        return f"{symbol} resolved: {rule} no longer holds ({at})"
    if _group(op) == "move":
        window = _window_of(condition)
        direction = "up" if _rises(op) else "down"
        return (f"{subject} {direction} {now}" + (f" in {window}" if window else "")
                + f" (rule: at least {rule_number(threshold, series, op)})")
    if _group(op) == "compare" and OPERATORS[op].kind != "level":  # the crossings
        up = op == "crossing_up" or (op == "crossing" and value is not None and threshold is not None
                                     and value > threshold)
        if series == "price":  # a tick crosses by cents: the level says it all
            return f"{symbol} crossed {'above' if up else 'below'} {level} (rule: {rule})"
        return f"{subject} at {now}, crossing {'above' if up else 'under'} {level} (rule: {rule})"
    if condition is not None and condition.lower is not None and condition.upper is not None:
        level = f"{fmt_value(condition.lower, series, op)}..{fmt_value(condition.upper, series, op)}"
        return f"{subject} at {now}, {OP_WORDS.get(op, op)} {level} (rule: {rule})"
    if _group(op) == "channel":
        return f"{subject} at {now}, {OP_WORDS[op]} the channel (nearer bound {level})"
    return f"{subject} at {now}, {OP_WORDS.get(op, op.replace('_', ' '))} {level} (rule: {rule})"


def alert_summary(alert: Alert, condition: Condition | None = None) -> str:
    return summary(alert.symbol, alert.series, alert.op, alert.value, alert.threshold, alert.state, condition)


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
        "condition": condition_text(alert.series, alert.op, alert.threshold),
        "summary": alert_summary(alert),
        "value_text": fmt_value(alert.value, alert.series, alert.op),
        "threshold_text": fmt_value(alert.threshold, alert.series, alert.op),
        "rule": alert.rule_name, "rule_name": alert.rule_name, "rule_id": alert.rule_id,
        "state": alert.state, "alert_id": alert.id, "message": alert.message,
        "chart_url": f"{public_url}/symbols/{alert.symbol}" if public_url else "",
    })
    return ctx


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
