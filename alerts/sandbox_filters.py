"""The filters and globals of the bounded sandbox: Jinja's own, checked before they build a value,
and the hooks the tree rewrite (:mod:`alerts.sandbox`) calls from compiled templates."""

from __future__ import annotations

from typing import Any, Callable

from jinja2 import filters as jfilters
from jinja2 import pass_context, pass_environment, pass_eval_context

from alerts.sandbox_budget import (MAX_EMITTED, MAX_RANGE, MAX_STEPS, MAX_VALUE, MAX_WIDTH, TemplateBudgetExceeded,
                                   check_width, checked_weight, current_budget, join_cost, percent_cost, refuse,
                                   replace_cost, weight)

# --- filters that take a width or a count, checked --------------------------------------------


def _center(value: Any, width: int = 80) -> str:
    check_width(width, "a centred text", MAX_VALUE)
    return jfilters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    unit = width if isinstance(width, str) else " " * (width if isinstance(width, int) and 0 <= width <= MAX_WIDTH else 0)
    if isinstance(width, int) and not isinstance(width, bool):
        check_width(width, "an indent")
    lines = str(s).count("\n") + 1
    if len(str(s)) + lines * len(unit) > MAX_VALUE:
        raise refuse("an indented text that large")
    return jfilters.do_indent(s, width, first, blank)


def _truncate(env: Any, s: str, length: int = 255, killwords: bool = False, end: str = "...",
              leeway: int | None = None) -> str:
    check_width(length, "a truncation length", MAX_VALUE)
    if isinstance(end, str) and len(end) > MAX_WIDTH:
        raise refuse("a truncation marker that long")
    return jfilters.do_truncate(env, s, length, killwords, end, leeway)


def _wordwrap(env: Any, s: str, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None,
              break_on_hyphens: bool = True) -> str:
    check_width(width, "a wrap width")
    text = str(s)
    sep = wrapstring if isinstance(wrapstring, str) else "\n"
    lines = len(text) // max(1, width if isinstance(width, int) else 1) + text.count("\n") + 1
    if len(text) + lines * len(sep) > MAX_VALUE:
        raise refuse("a wrapped text that large")
    return jfilters.do_wordwrap(env, s, width, break_long_words, wrapstring, break_on_hyphens)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    if percent_cost(str(value), kwargs or args) > MAX_VALUE:
        raise refuse("a formatted text that large")
    return jfilters.do_format(value, *args, **kwargs)


def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    if replace_cost(str(s), str(old), str(new), -1 if count is None else count) > MAX_VALUE:
        raise refuse("a replaced text that large")
    return jfilters.do_replace(eval_ctx, s, old, new, count)


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value) if not isinstance(value, str) else list(value)
    checked_weight(items)
    if join_cost(str(d), items) > MAX_VALUE:
        raise refuse("a joined text that large")
    return jfilters.sync_do_join(eval_ctx, items, d, attribute)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    check_width(linecount, "a batch size")
    value = checked_weight(list(value), "batches of that much")
    if fill_with is not None and weight(fill_with) * max(1, linecount) > MAX_VALUE:
        raise refuse("batches filled with that much")
    return jfilters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    check_width(slices, "a number of slices")
    value = checked_weight(list(value), "slices of that much")
    if fill_with is not None and weight(fill_with) * max(1, slices) > MAX_VALUE:
        raise refuse("slices filled with that much")
    return jfilters.sync_do_slice(value, slices, fill_with)


def _sum(env: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, (int, float)):
        raise refuse("a sum of anything but numbers")
    return jfilters.sync_do_sum(env, iterable, attribute, start)


CHECKED_FILTERS: dict[str, Any] = {
    "center": _center, "indent": _indent, "format": _format, "batch": _batch, "sum": pass_environment(_sum),
    "truncate": pass_environment(_truncate), "wordwrap": pass_environment(_wordwrap),
    "replace": pass_eval_context(_replace), "join": pass_eval_context(_join),
    "slice": _slice,
}


def bounded_range(*args: int) -> range:
    for arg in args:
        check_width(arg, "a range bound", 10**18)
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise refuse(f"a range of {len(rng)} items (at most {MAX_RANGE})")
    return rng


def bounded_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    return checked_weight(dict(*args, **kwargs))


# --- the hooks: filters, because compiled templates call filters directly ---------------------
# pass_context: Jinja folds a filter of a constant at compile time unless it takes the context


@pass_context
def _step(_ctx: Any, value: Any) -> Any:
    current = current_budget()
    current.steps += 1
    if current.steps > MAX_STEPS:
        raise TemplateBudgetExceeded(f"the template took more than {MAX_STEPS} loop steps")
    current.check_time()
    return value


@pass_context
def _value(_ctx: Any, value: Any) -> Any:
    current_budget().check_time()
    return checked_weight(value, "a list or dict that large")


@pass_context
def _concat(_ctx: Any, parts: tuple[Any, ...]) -> str:
    current_budget().check_time()
    total = 0
    for part in parts:
        total += weight(part)
        if total > MAX_VALUE:
            raise refuse("a joined text that large")
    return "".join(str(p) for p in parts)


@pass_context
def _emit(_ctx: Any, value: Any) -> Any:
    current = current_budget()
    current.check_time()
    current.emitted += len(value) if isinstance(value, str) else weight(value, MAX_EMITTED)
    if current.emitted > MAX_EMITTED:
        raise TemplateBudgetExceeded(f"the template wrote more than {MAX_EMITTED} characters")
    return value


def timed(f: Callable[..., Any]) -> Callable[..., Any]:
    """``f`` checking the render's clock first: a chain of filters (``x|list|batch(1)|list...``) runs no
    loop step, yet may run long."""
    def clocked(*args: Any, **kwargs: Any) -> Any:
        current_budget().check_time()
        return f(*args, **kwargs)

    if hasattr(f, "jinja_pass_arg"):
        # Jinja reads the marker that @pass_context and friends set on the function
        setattr(clocked, "jinja_pass_arg", f.jinja_pass_arg)  # noqa: B010
    return clocked


HOOKS = {"tb_step": _step, "tb_value": _value, "tb_concat": _concat, "tb_emit": _emit}
