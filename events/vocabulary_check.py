"""The one validation of a rule condition, derived from :mod:`events.vocabulary` (pure).

:func:`validate` takes what a person or a client sent (a dict; numbers may arrive as form
strings) and returns the condition with the field errors, keyed by form field
(``condition.value``, ``condition.also.op``) in words a person reads. :func:`problems` is
its second half on an already-typed :class:`~events.vocabulary.Condition`: the engine
calls it before it compiles a rule, so what the web accepts the engine evaluates and what
the web refuses the engine refuses, with the same words. :func:`rule_problems` does the
same for the rule-level settings that depend on the condition (recovery, hours, zone).

Decisions where the copies used to disagree (``docs/architecture.md``):
a channel needs ``lower < upper`` (a zero-width channel is a typo, not a rule); a move
needs its window, in bars or in seconds (no silent one-bar default); a series is never
compared with itself; a condition has at most one ``also``.
"""

from __future__ import annotations

import math
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from events.vocabulary import FREQUENCIES, GROUPS, MAX_CONDITIONS, OPERATORS, PARAMS, SERIES, Condition

__all__ = ["FIELDS", "MAX_ALSO_DEPTH", "as_dict", "condition_schema", "problems", "rule_problems", "validate"]

FIELDS = ("series", "op", *PARAMS, "also", "more", "match")
MAX_ALSO_DEPTH = 1


def _series_choice() -> str:
    return ", ".join(SERIES)


def _coerce(raw: Any, name: str, errors: dict[str, str], prefix: str) -> float | int | str | None:
    """A parameter's value as its :class:`~events.vocabulary.ParamDef` types it; an empty form field is None."""
    if raw is None or raw == "":
        return None
    param = PARAMS[name]
    if param.kind == "series":
        return raw if isinstance(raw, str) else str(raw)
    if isinstance(raw, bool):
        errors[prefix + name] = "must be a number" if param.kind == "number" else f"must be a whole number, got {raw!r}"
        return None
    if param.kind == "integer":
        try:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw)
        except (TypeError, ValueError, OverflowError):
            errors[prefix + name] = f"must be a whole number, got {raw!r}"
            return None
        lo, hi = param.minimum, param.maximum
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            errors[prefix + name] = f"must be between {lo} and {hi}"
            return None
        return value
    try:
        number = float(raw)
    except (TypeError, ValueError):
        errors[prefix + name] = f"must be a number, got {raw!r}"
        return None
    if not math.isfinite(number):
        errors[prefix + name] = "must be a finite number"
        return None
    return number


def validate(raw: Any, prefix: str = "condition.", depth: int = 0) -> tuple[Condition | None, dict[str, str]]:
    """Check a condition as sent; return ``(condition, {field: message})``.

    The condition holds only the parameters its operator uses (None when it could not be
    built at all); with errors it must not be saved.
    """
    where = prefix.rstrip(".")
    if not isinstance(raw, dict):
        return None, {where: "must be an object with series and op"}
    errors: dict[str, str] = {}
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        errors[where] = f"unknown field(s): {', '.join(unknown)}"
    series, op = raw.get("series"), raw.get("op")
    if not series:
        errors[prefix + "series"] = "is required"
    if not op:
        errors[prefix + "op"] = "is required"
    values = {name: _coerce(raw.get(name), name, errors, prefix) for name in PARAMS}
    more, match = _validate_more(raw, prefix, depth, errors)
    also_raw = raw.get("also")
    also: Condition | None = None
    if also_raw:
        if depth >= MAX_ALSO_DEPTH:
            errors[prefix + "also"] = "one extra condition at most"
        else:
            also, also_errors = validate(also_raw, prefix + "also.", depth + 1)
            errors.update(also_errors)
    if not isinstance(series, str) or not isinstance(op, str):
        if series and not isinstance(series, str):
            errors[prefix + "series"] = f"choose one of: {_series_choice()}"
        if op and not isinstance(op, str):
            errors[prefix + "op"] = f"choose one of: {', '.join(OPERATORS)}"
        if isinstance(series, str) and series and series not in SERIES:
            errors[prefix + "series"] = f"unknown series {series!r}; choose one of: {_series_choice()}"
        return None, errors
    group = OPERATORS[op].group if op in OPERATORS else None
    used = {name: values[name] for name in GROUPS[group]} if group else {}
    cond = Condition(series=series, op=op, also=also, more=more, match=match, **used)  # type: ignore[arg-type]
    window_typo = prefix + "window_bars" in errors or prefix + "window_s" in errors
    for field, message in problems(cond, prefix, depth).items():
        if not (window_typo and field == prefix + "window_s"):
            errors.setdefault(field, message)
    if not errors:
        try:  # the contract's types and ranges are the final word
            msgspec.convert(as_dict(cond), Condition)
        except msgspec.ValidationError as exc:
            errors[where] = str(exc)
    return cond, errors


def _validate_more(raw: dict[str, Any], prefix: str, depth: int,
                   errors: dict[str, str]) -> tuple[list[Condition], str]:
    """The further conditions (``more``) and ``match`` as sent; their errors go into ``errors``."""
    match = raw.get("match") or "all"
    if match not in ("all", "any"):
        errors[prefix + "match"] = "choose all or any"
        match = "all"
    more_raw = raw.get("more") or []
    if not isinstance(more_raw, list):
        errors[prefix + "more"] = "must be a list of conditions"
        return [], match
    if depth > 0 and more_raw:
        errors[prefix + "more"] = "only the rule's first condition takes more conditions"
        return [], match
    if len(more_raw) > MAX_CONDITIONS - 1:
        errors[prefix + "more"] = f"{MAX_CONDITIONS} conditions at most in one rule"
        return [], match
    more: list[Condition] = []
    for i, part_raw in enumerate(more_raw):
        part, part_errors = validate(part_raw, f"{prefix}more.{i}.", depth + 1)
        errors.update(part_errors)
        if part is not None:
            more.append(part)
    return more, match


def problems(cond: Condition, prefix: str = "condition.", depth: int = 0) -> dict[str, str]:
    """What makes a typed condition meaningless, ``{field: message}`` (empty: it is fine).

    Only the parameters of the operator's group are judged; the others are ignored (and
    dropped by :func:`validate`).
    """
    errors: dict[str, str] = {}
    if cond.series not in SERIES:
        errors[prefix + "series"] = f"unknown series {cond.series!r}; choose one of: {_series_choice()}"
    o = OPERATORS.get(cond.op)
    if o is None:
        errors[prefix + "op"] = f"unknown operator {cond.op!r}; choose one of: {', '.join(OPERATORS)}"
    elif o.group == "compare":
        if cond.other is not None and cond.other not in SERIES:
            errors[prefix + "other"] = f"unknown series {cond.other!r}; choose one of: {_series_choice()}"
        elif cond.other is not None and cond.other == cond.series:
            errors[prefix + "other"] = "must differ from the series it is compared with"
        if (cond.value is None) == (cond.other is None):
            errors[prefix + "value"] = "give either a level (value) or another series (other), not both"
    elif o.group == "channel":
        if cond.lower is None:
            errors[prefix + "lower"] = "is required for a channel"
        if cond.upper is None:
            errors[prefix + "upper"] = "is required for a channel"
        if cond.lower is not None and cond.upper is not None and cond.lower >= cond.upper:
            errors[prefix + "upper"] = "must be greater than lower"
    else:  # move
        if cond.value is None:
            errors[prefix + "value"] = "is required: the size of the move"
        elif cond.value <= 0:
            errors[prefix + "value"] = "must be greater than 0 (the direction is in the operator)"
        if (cond.window_bars is None) == (cond.window_s is None):
            errors[prefix + "window_s"] = "give the window either in bars (window_bars) or in seconds (window_s)"
    if cond.also is not None:
        if depth >= MAX_ALSO_DEPTH:
            errors[prefix + "also"] = "one extra condition at most"
        elif cond.more:
            errors[prefix + "also"] = "give the extra conditions in more, not also"
        else:
            errors.update(problems(cond.also, prefix + "also.", depth + 1))
    if cond.more:
        if depth > 0:
            errors[prefix + "more"] = "only the rule's first condition takes more conditions"
        elif len(cond.more) > MAX_CONDITIONS - 1:
            errors[prefix + "more"] = f"{MAX_CONDITIONS} conditions at most in one rule"
        for i, part in enumerate(cond.more):
            errors.update(problems(part, f"{prefix}more.{i}.", depth + 1))
    if cond.match not in ("all", "any"):
        errors[prefix + "match"] = "choose all or any"
    return errors


def rule_problems(cond: Condition | None, *, recovery: float | None = None, timezone: str = "America/New_York",
                  active_from_min: int | None = None, active_to_min: int | None = None) -> dict[str, str]:
    """What makes a rule's own settings meaningless next to its condition, ``{field: message}``
    (``cond`` None: the condition is itself invalid, so the recovery level is not judged)."""
    errors: dict[str, str] = {}
    if recovery is not None and cond is not None and cond.more:
        errors["recovery"] = "a recovery level needs a rule of one condition"
    elif recovery is not None and cond is not None:
        o = OPERATORS.get(cond.op)
        direction = o.direction if o is not None else 0
        if direction == 0 or cond.value is None:
            ups = [n for n, d in OPERATORS.items() if d.direction]
            errors["recovery"] = f"a recovery level needs a constant level (value) with {', '.join(ups)}"
        elif direction > 0 and recovery > cond.value:
            errors["recovery"] = f"must be at or below the threshold {cond.value:g} for {cond.op}"
        elif direction < 0 and recovery < cond.value:
            errors["recovery"] = f"must be at or above the threshold {cond.value:g} for {cond.op}"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors["timezone"] = f"unknown time zone {timezone!r} (e.g. America/New_York, Europe/London, UTC)"
    if (active_from_min is None) != (active_to_min is None):
        errors["active_to_min"] = "give both ends of the active hours, or neither"
    elif active_from_min is not None and active_from_min == active_to_min:
        errors["active_to_min"] = "must differ from active_from_min (leave both empty for all day)"
    return errors


def as_dict(cond: Condition) -> dict[str, Any]:
    """The condition as stored JSON: only the fields it sets."""
    out: dict[str, Any] = {"series": cond.series, "op": cond.op}
    for name in PARAMS:
        value = getattr(cond, name)
        if value is not None:
            out[name] = value
    if cond.also is not None:
        out["also"] = as_dict(cond.also)
    if cond.more:
        out["more"] = [as_dict(part) for part in cond.more]
        out["match"] = cond.match
    return out


def condition_schema(ref: str = "#/components/schemas/Condition") -> dict[str, Any]:
    """The JSON schema (OpenAPI 3.1) of a condition: series and operators as enums, each
    parameter typed and bounded as :data:`~events.vocabulary.PARAMS` says."""
    types = {"number": "number", "integer": "integer", "series": "string"}
    properties: dict[str, Any] = {
        "series": {"type": "string", "enum": list(SERIES)},
        "op": {"type": "string", "enum": list(OPERATORS)},
    }
    for p in PARAMS.values():
        prop: dict[str, Any] = {"type": [types[p.kind], "null"], "description": p.description}
        if p.kind == "series":
            prop["enum"] = [*SERIES, None]
        if p.minimum is not None:
            prop["minimum"] = p.minimum
        if p.maximum is not None:
            prop["maximum"] = p.maximum
        properties[p.name] = prop
    properties["also"] = {"oneOf": [{"$ref": ref}, {"type": "null"}]}
    properties["more"] = {"type": "array", "items": {"$ref": ref}, "maxItems": MAX_CONDITIONS - 1,
                          "description": "further conditions of the rule; match says whether all or any must hold"}
    properties["match"] = {"type": "string", "enum": ["all", "any"], "default": "all"}
    return {"type": "object", "required": ["series", "op"], "properties": properties}


def frequency_schema() -> dict[str, Any]:
    return {"type": "string", "enum": list(FREQUENCIES)}
