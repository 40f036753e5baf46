"""The budgets of one template render and the weights of the values a template builds.

A render runs inside :func:`budget` on its thread; the checks the sandbox puts
into compiled templates (:mod:`alerts.sandbox_filters`) count steps and output
against it and weigh values (:func:`weight`: about the length of their text)
before they are built. Pure, apart from the thread's CPU clock.
"""

from __future__ import annotations

import re
import string
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, TypeVar

from jinja2.exceptions import SecurityError

T = TypeVar("T")

MAX_VALUE = 64_000      # the heaviest value (about its text length) a template may build
MAX_EMITTED = 256_000   # characters of output per render, captures included
MAX_STEPS = 2_000       # loop iterations + loop tests + macro calls per render
MAX_RANGE = 10_000      # items in one range()
MAX_WIDTH = 1_000       # a width, precision or count in a format spec or filter
MAX_INT_BITS = 8_192    # the largest integer arithmetic may build (~2,500 digits)
RENDER_S = 0.025        # CPU budget of one render on its thread (compiling excluded)

STR_METHODS = frozenset({
    "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha", "isascii", "isdecimal",
    "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper", "lower",
    "lstrip", "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper",
    # checked in call():
    "center", "ljust", "rjust", "zfill", "replace", "join",
    # checked by wrap_str_format():
    "format", "format_map",
})
NUMBER_ATTRS = frozenset({"real", "imag", "is_integer", "bit_length", "conjugate", "numerator", "denominator"})
SEQUENCE_METHODS = frozenset({"count", "index"})
DICT_METHODS = frozenset({"keys", "values", "items", "get"})
PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


class TemplateBudgetExceeded(SecurityError):
    """A render tried to do more work than a message template may."""


class Budget:
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
def budget(seconds: float = RENDER_S) -> Iterator[Budget]:
    """The budget of one render on this thread (renders outside one are refused)."""
    previous = getattr(_local, "budget", None)
    _local.budget = current = Budget(seconds)
    try:
        yield current
    finally:
        _local.budget = previous


def current_budget() -> Budget:
    current = getattr(_local, "budget", None)
    if not isinstance(current, Budget):
        raise TemplateBudgetExceeded("templates render only inside alerts.sandbox.budget()")
    return current


def refuse(what: str) -> TemplateBudgetExceeded:
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


def checked_weight(value: T, what: str = "a value that large") -> T:
    if weight(value) > MAX_VALUE:
        raise refuse(what)
    return value


def check_width(value: Any, what: str, limit: int = MAX_WIDTH) -> None:
    if isinstance(value, int) and not -limit <= value <= limit:
        raise refuse(f"{what} of {value}")


def percent_cost(fmt: str, args: Any) -> int:
    """An upper bound on the length of ``fmt % args``; refuses ``*`` and huge widths or precisions."""
    specs = 0
    for match in PERCENT_SPEC.finditer(fmt):
        specs += 1
        for part in match.group(1, 2):
            if part == "*":
                raise refuse("a %-format with a * width")
            if part and int(part) > MAX_WIDTH:
                raise refuse(f"a %-format {part} characters wide")
    heaviest = weight(args)
    return len(fmt) + specs * (heaviest + MAX_WIDTH)


def format_cost(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
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
            raise refuse("a format field whose width comes from an argument")
        for number in re.findall(r"\d+", spec or ""):
            if int(number) > MAX_WIDTH:
                raise refuse(f"a format field {number} characters wide")
    heaviest = max([weight(a) for a in args] + [weight(v) for v in kwargs.values()] + [0])
    return len(fmt) + fields * (heaviest + MAX_WIDTH)


def replace_cost(text: str, old: str, new: str, count: int = -1) -> int:
    hits = (len(text) + 1) if old == "" else text.count(old)
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def join_cost(sep: str, items: list[Any]) -> int:
    return weight(items) + max(0, len(items) - 1) * len(sep)
