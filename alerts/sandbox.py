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

from typing import Any

from jinja2 import Template, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from alerts.sandbox_budget import (DICT_METHODS, MAX_INT_BITS, MAX_STEPS, MAX_VALUE, NUMBER_ATTRS, RENDER_S,
                                   SEQUENCE_METHODS, STR_METHODS, TemplateBudgetExceeded, budget, check_width,
                                   current_budget, format_cost, join_cost, percent_cost, refuse, replace_cost, weight)
from alerts.sandbox_filters import CHECKED_FILTERS, HOOKS, bounded_dict, bounded_range, timed

__all__ = ["BoundedEnvironment", "TemplateBudgetExceeded", "budget", "MAX_VALUE", "MAX_STEPS", "RENDER_S"]

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




class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every user template renders in (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals.pop("lipsum", None)
        self.globals.pop("namespace", None)
        self.globals["range"] = bounded_range
        self.globals["dict"] = bounded_dict
        self.filters.pop("urlize", None)
        self.filters.update(CHECKED_FILTERS)
        self.filters = {name: timed(f) for name, f in self.filters.items()}
        self.filters.update(HOOKS)

    # --- compile: parse, then rewrite the tree ---

    def instrumented(self, source: str) -> nodes.Template:
        rewritten: nodes.Template = _Instrument().visit(self.parse(source))
        rewritten.set_environment(self)
        return rewritten

    def compile_bounded(self, source: str) -> Template:
        return self.from_string(self.instrumented(source))

    # --- the sandbox's own hooks ---

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str):
            return attr in STR_METHODS
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return False
        if isinstance(obj, (int, float, complex)):
            return attr in NUMBER_ATTRS
        if isinstance(obj, (list, tuple, range)):
            return attr in SEQUENCE_METHODS
        if isinstance(obj, dict):
            return attr in DICT_METHODS
        if isinstance(obj, (set, frozenset)):
            return False
        return True

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        current_budget().check_time()
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(n, int) and isinstance(seq, (str, list, tuple)):
                if n > 0 and max(1, weight(seq, MAX_VALUE)) * n > MAX_VALUE:
                    raise refuse(f"a repetition {n} times over")
            elif isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise refuse("an integer that large")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * left.bit_length() > MAX_INT_BITS:
                    raise refuse("an integer that large")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                if weight(left) + weight(right) > MAX_VALUE:
                    raise refuse("a value that large")
        elif operator == "%":
            if isinstance(left, str) and percent_cost(left, right) > MAX_VALUE:
                raise refuse("a formatted text that large")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map:
                cost = format_cost(fmt, (), dict(args[0]) if args and isinstance(args[0], dict) else {})
            else:
                cost = format_cost(fmt, args, kwargs)
            if cost > MAX_VALUE:
                raise refuse("a formatted text that large")
            return wrapped(*args, **kwargs)

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805,B902
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in ("center", "ljust", "rjust", "zfill") and args:
                check_width(args[0], "a padded text", MAX_VALUE)
            elif name == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 and isinstance(args[2], int) else -1
                if replace_cost(owner, str(args[0]), str(args[1]), count) > MAX_VALUE:
                    raise refuse("a replaced text that large")
            elif name == "join" and args:
                items = list(args[0])
                if join_cost(owner, items) > MAX_VALUE:
                    raise refuse("a joined text that large")
                args = (items, *args[1:])
        return super().call(__context, __obj, *args, **kwargs)

