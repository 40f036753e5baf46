"""A Jinja2 sandbox whose renders are bounded in time, steps, value sizes and output.

Jinja's own sandbox stops templates from reaching Python internals, not from
doing a lot of work: ``{{ 'a' * 10**9 }}``, ``''|center(10**9)``,
``'%0999999999d'|format(1)`` or three nested ``range`` loops each hold a
process (the shared rule engine, a worker) for seconds and gigabytes. Here:

* every value a template builds is *weighed* before it is built: ``*``,
  ``**``, ``+``, ``%``, ``~``, list/tuple/dict literals, ``dict()``, string
  methods and filters that take a width or a count refuse results heavier
  than :data:`MAX_VALUE` (about the length of the value's text);
* every loop iteration, loop filter test and macro call is a *step*
  (:data:`MAX_STEPS`), and each step checks the wall clock (:data:`RENDER_S`);
* every piece of output, including output captured by ``{% set %}`` blocks,
  macros and filter blocks, counts towards :data:`MAX_EMITTED`;
* ``range`` is capped, and ``lipsum``/``namespace`` (free text, state
  carried across loop iterations) are gone, as are filters and methods that
  multiply their input (``urlize``, ``str.expandtabs``, ``str.translate``,
  ``int.to_bytes``...).

Going over a budget raises :class:`TemplateBudgetExceeded` (a
``SecurityError``); :mod:`alerts.templates` turns any render failure into its
fallback text. Budgets are per render and per thread (:func:`budget`).
"""

from __future__ import annotations

import re
import string
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from jinja2 import nodes
from jinja2 import filters as jfilters
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

__all__ = ["BoundedEnvironment", "TemplateBudgetExceeded", "budget", "MAX_VALUE", "MAX_STEPS", "RENDER_S"]

MAX_VALUE = 64_000      # the heaviest value (about its text length) a template may build
MAX_EMITTED = 256_000   # characters of output per render, captures included
MAX_STEPS = 2_000       # loop iterations + loop tests + macro calls per render
MAX_RANGE = 10_000      # items in one range()
MAX_WIDTH = 1_000       # a width, precision or count in a format spec or filter
MAX_INT_BITS = 8_192    # the largest integer arithmetic may build (~2,500 digits)
RENDER_S = 0.025        # CPU budget of one render on its thread (compiling excluded)

_STR_METHODS = frozenset({
    "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isascii", "isdecimal",
    "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "lower",
    "lstrip", "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    # checked in call():
    "center", "ljust", "rjust", "zfill", "replace", "join",
    # checked by wrap_str_format():
    "format", "format_map",
})
_NUMBER_ATTRS = frozenset({"real", "imag", "is_integer", "bit_length", "conjugate", "numerator", "denominator"})
_SEQUENCE_METHODS = frozenset({"count", "index"})
_DICT_METHODS = frozenset({"keys", "values", "items", "get"})
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


class TemplateBudgetExceeded(SecurityError):
    """A render tried to do more work than a message template may."""


class _Budget:
    __slots__ = ("steps", "emitted", "deadline")

    def __init__(self, seconds: float) -> None:
        self.steps = 0
        self.emitted = 0
        # the thread's own CPU time, not the wall clock: on a busy machine (or behind the GIL) a
        # cheap render can wait for the CPU past any wall-clock budget, and a template refused
        # once is refused for the rest of the process (alerts.templates)
        self.deadline = time.thread_time() + seconds

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise TemplateBudgetExceeded(f"the template used more than {RENDER_S * 1000:.0f} ms of CPU")


_local = threading.local()


@contextmanager
def budget(seconds: float = RENDER_S) -> Iterator[_Budget]:
    """The budget of one render on this thread (renders outside one are refused)."""
    previous = getattr(_local, "budget", None)
    _local.budget = current = _Budget(seconds)
    try:
        yield current
    finally:
        _local.budget = previous


def _current() -> _Budget:
    current = getattr(_local, "budget", None)
    if current is None:
        raise TemplateBudgetExceeded("templates render only inside alerts.sandbox.budget()")
    return current


def _refuse(what: str) -> TemplateBudgetExceeded:
    return TemplateBudgetExceeded(f"the template would build {what}; templates are limited to small values")


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """About the length of ``str(value)``, counted only until it passes ``limit`` (shared references count
    every time they appear, as they would when printed)."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 4
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, (float, complex)):
            total += 26
        elif isinstance(item, range):
            total += 24
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 32
        if total > limit:
            return total
    return total


def _check_weight(value: Any, what: str = "a value that large") -> Any:
    if weight(value) > MAX_VALUE:
        raise _refuse(what)
    return value


def _width(value: Any, what: str, limit: int = MAX_WIDTH) -> None:
    if isinstance(value, int) and not -limit <= value <= limit:
        raise _refuse(f"{what} of {value}")


def _percent_cost(fmt: str, args: Any) -> int:
    """An upper bound on the length of ``fmt % args``; refuses ``*`` and huge widths or precisions."""
    specs = 0
    for match in _PERCENT_SPEC.finditer(fmt):
        specs += 1
        for part in match.group(1, 2):
            if part == "*":
                raise _refuse("a %-format with a * width")
            if part and int(part) > MAX_WIDTH:
                raise _refuse(f"a %-format {part} characters wide")
    heaviest = weight(args)
    return len(fmt) + specs * (heaviest + MAX_WIDTH)


def _format_cost(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """An upper bound on the length of ``fmt.format(*args, **kwargs)``; refuses nested and huge specs."""
    fields = 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return len(fmt)  # format() raises the same error
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise _refuse("a format field whose width comes from an argument")
        for number in re.findall(r"\d+", spec or ""):
            if int(number) > MAX_WIDTH:
                raise _refuse(f"a format field {number} characters wide")
    heaviest = max([weight(a) for a in args] + [weight(v) for v in kwargs.values()] + [0])
    return len(fmt) + fields * (heaviest + MAX_WIDTH)


def _replace_cost(text: str, old: str, new: str, count: int = -1) -> int:
    hits = (len(text) + 1) if old == "" else text.count(old)
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _join_cost(sep: str, items: list[Any]) -> int:
    return weight(items) + max(0, len(items) - 1) * len(sep)


# --- filters that take a width or a count, checked --------------------------------------------


def _center(value: Any, width: int = 80) -> str:
    _width(width, "a centred text", MAX_VALUE)
    return jfilters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    unit = width if isinstance(width, str) else " " * (width if isinstance(width, int) and 0 <= width <= MAX_WIDTH else 0)
    if isinstance(width, int) and not isinstance(width, bool):
        _width(width, "an indent")
    lines = str(s).count("\n") + 1
    if len(str(s)) + lines * len(unit) > MAX_VALUE:
        raise _refuse("an indented text that large")
    return jfilters.do_indent(s, width, first, blank)


def _truncate(env: Any, s: str, length: int = 255, killwords: bool = False, end: str = "...",
              leeway: int | None = None) -> str:
    _width(length, "a truncation length", MAX_VALUE)
    if isinstance(end, str) and len(end) > MAX_WIDTH:
        raise _refuse("a truncation marker that long")
    return jfilters.do_truncate(env, s, length, killwords, end, leeway)


def _wordwrap(env: Any, s: str, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None,
              break_on_hyphens: bool = True) -> str:
    _width(width, "a wrap width")
    text = str(s)
    sep = wrapstring if isinstance(wrapstring, str) else "\n"
    lines = len(text) // max(1, width if isinstance(width, int) else 1) + text.count("\n") + 1
    if len(text) + lines * len(sep) > MAX_VALUE:
        raise _refuse("a wrapped text that large")
    return jfilters.do_wordwrap(env, s, width, break_long_words, wrapstring, break_on_hyphens)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    if _percent_cost(str(value), kwargs or args) > MAX_VALUE:
        raise _refuse("a formatted text that large")
    return jfilters.do_format(value, *args, **kwargs)


def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    if _replace_cost(str(s), str(old), str(new), -1 if count is None else count) > MAX_VALUE:
        raise _refuse("a replaced text that large")
    return jfilters.do_replace(eval_ctx, s, old, new, count)


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value) if not isinstance(value, str) else list(value)
    _check_weight(items)
    if _join_cost(str(d), items) > MAX_VALUE:
        raise _refuse("a joined text that large")
    return jfilters.sync_do_join(eval_ctx, items, d, attribute)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    _width(linecount, "a batch size")
    value = _check_weight(list(value), "batches of that much")
    if fill_with is not None and weight(fill_with) * max(1, linecount) > MAX_VALUE:
        raise _refuse("batches filled with that much")
    return jfilters.do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    _width(slices, "a number of slices")
    value = _check_weight(list(value), "slices of that much")
    if fill_with is not None and weight(fill_with) * max(1, slices) > MAX_VALUE:
        raise _refuse("slices filled with that much")
    return jfilters.sync_do_slice(value, slices, fill_with)


def _sum(env: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, (int, float)):
        raise _refuse("a sum of anything but numbers")
    return jfilters.sync_do_sum(env, iterable, attribute, start)


_CHECKED_FILTERS: dict[str, Any] = {
    "center": _center, "indent": _indent, "format": _format, "batch": _batch, "sum": jfilters.pass_environment(_sum),
    "truncate": jfilters.pass_environment(_truncate), "wordwrap": jfilters.pass_environment(_wordwrap),
    "replace": jfilters.pass_eval_context(_replace), "join": jfilters.pass_eval_context(_join),
    "slice": _slice,
}


def _range(*args: int) -> range:
    for arg in args:
        _width(arg, "a range bound", 10**18)
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise _refuse(f"a range of {len(rng)} items (at most {MAX_RANGE})")
    return rng


def _dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    return _check_weight(dict(*args, **kwargs))


# --- the tree rewrite that puts the checks into compiled templates -----------------------------


def _hook(name: str, value: nodes.Expr, lineno: int) -> nodes.Filter:
    """``value|name``: the hooks are filters because compiled templates call filters directly
    (a sandboxed call costs several times more, and a step runs in every loop iteration)."""
    call = nodes.Filter(value, name, [], [], None, None)
    call.set_lineno(lineno)
    return call


class _Instrument(NodeTransformer):
    """Steps in loops and macros, weighed literals and concatenations, counted output."""

    def _tick(self, node: nodes.Node) -> nodes.ExprStmt:
        stmt = nodes.ExprStmt(_hook("tb_step", nodes.Const(None), node.lineno or 1))
        stmt.set_lineno(node.lineno or 1)
        return stmt

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node))
        if node.test is not None:
            node.test = nodes.And(_hook("tb_step", nodes.Const(True), node.lineno or 1), node.test,
                                  lineno=node.lineno)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node))
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _hook("tb_concat", nodes.Tuple(list(node.nodes), "load", lineno=node.lineno), node.lineno or 1)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _hook("tb_value", node, node.lineno or 1)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _hook("tb_value", node, node.lineno or 1)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        if node.ctx != "load":  # an assignment target: {% for a, b in ... %}
            return node
        return _hook("tb_value", node, node.lineno or 1)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        out: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                child = nodes.Const(child.data, lineno=child.lineno)
            out.append(_hook("tb_emit", child, child.lineno or node.lineno or 1))
        node.nodes = out
        return node


# pass_context: Jinja folds a filter of a constant at compile time unless it takes the context
@jfilters.pass_context
def _step(_ctx: Any, value: Any) -> Any:
    current = _current()
    current.steps += 1
    if current.steps > MAX_STEPS:
        raise TemplateBudgetExceeded(f"the template took more than {MAX_STEPS} loop steps")
    current.check_time()
    return value


@jfilters.pass_context
def _value(_ctx: Any, value: Any) -> Any:
    _current().check_time()
    return _check_weight(value, "a list or dict that large")


@jfilters.pass_context
def _concat(_ctx: Any, parts: tuple[Any, ...]) -> str:
    _current().check_time()
    total = 0
    for part in parts:
        total += weight(part)
        if total > MAX_VALUE:
            raise _refuse("a joined text that large")
    return "".join(str(p) for p in parts)


@jfilters.pass_context
def _emit(_ctx: Any, value: Any) -> Any:
    current = _current()
    current.check_time()
    current.emitted += len(value) if isinstance(value, str) else weight(value, MAX_EMITTED)
    if current.emitted > MAX_EMITTED:
        raise TemplateBudgetExceeded(f"the template wrote more than {MAX_EMITTED} characters")
    return value


def _timed(f: Any) -> Any:
    """``f`` checking the render's clock first: a chain of filters (``x|list|batch(1)|list...``) runs no
    loop step, yet may run long."""
    def timed(*args: Any, **kwargs: Any) -> Any:
        _current().check_time()
        return f(*args, **kwargs)

    if hasattr(f, "jinja_pass_arg"):
        timed.jinja_pass_arg = f.jinja_pass_arg  # type: ignore[attr-defined]
    return timed


_HOOKS = {"tb_step": _step, "tb_value": _value, "tb_concat": _concat, "tb_emit": _emit}


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every user template renders in (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals.pop("lipsum", None)
        self.globals.pop("namespace", None)
        self.globals["range"] = _range
        self.globals["dict"] = _dict
        self.filters.pop("urlize", None)
        self.filters.update(_CHECKED_FILTERS)
        self.filters = {name: _timed(f) for name, f in self.filters.items()}
        self.filters.update(_HOOKS)

    # --- compile: parse, then rewrite the tree ---

    def instrumented(self, source: str) -> nodes.Template:
        tree = self.parse(source)
        tree = _Instrument().visit(tree)
        tree.set_environment(self)
        return tree

    def compile_bounded(self, source: str) -> Any:
        return self.from_string(self.instrumented(source))

    # --- the sandbox's own hooks ---

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return False
        if isinstance(obj, (int, float, complex)):
            return attr in _NUMBER_ATTRS
        if isinstance(obj, (list, tuple, range)):
            return attr in _SEQUENCE_METHODS
        if isinstance(obj, dict):
            return attr in _DICT_METHODS
        if isinstance(obj, (set, frozenset)):
            return False
        return True

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _current().check_time()
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(n, int) and isinstance(seq, (str, list, tuple)):
                if n > 0 and max(1, weight(seq, MAX_VALUE)) * n > MAX_VALUE:
                    raise _refuse(f"a repetition {n} times over")
            elif isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise _refuse("an integer that large")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * left.bit_length() > MAX_INT_BITS:
                    raise _refuse("an integer that large")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                if weight(left) + weight(right) > MAX_VALUE:
                    raise _refuse("a value that large")
        elif operator == "%":
            if isinstance(left, str) and _percent_cost(left, right) > MAX_VALUE:
                raise _refuse("a formatted text that large")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map:
                cost = _format_cost(fmt, (), dict(args[0]) if args and isinstance(args[0], dict) else {})
            else:
                cost = _format_cost(fmt, args, kwargs)
            if cost > MAX_VALUE:
                raise _refuse("a formatted text that large")
            return wrapped(*args, **kwargs)  # type: ignore[no-any-return]

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805,B902
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in ("center", "ljust", "rjust", "zfill") and args:
                _width(args[0], "a padded text", MAX_VALUE)
            elif name == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
                if _replace_cost(owner, str(args[0]), str(args[1]), count) > MAX_VALUE:
                    raise _refuse("a replaced text that large")
            elif name == "join" and args:
                items = list(args[0])
                if _join_cost(owner, items) > MAX_VALUE:
                    raise _refuse("a joined text that large")
                args = (items, *args[1:])
        return super().call(__context, __obj, *args, **kwargs)

