"""Markdown helpers of the performance report: numbers, tables, latencies with their n."""

from __future__ import annotations

import re
from typing import Any

Rows = list[list[Any]]


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        if abs(v) < 10:
            return f"{v:.3f}".rstrip("0").rstrip(".")
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(header: list[str], rows: Rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def lat(d: dict[str, Any] | None) -> str:
    """p50 / p99 / max (n) of a percentiles() dict."""
    if not d or not d.get("n"):
        return "–"
    return f"{fmt(d['p50'])} / {fmt(d['p99'])} / {fmt(d['max'])} (n={d['n']:,})"


def p99n(d: dict[str, Any] | None, unit: str = "ms") -> str:
    """p50 / p99 with n, the README's short form."""
    if not d or not d.get("n"):
        return "no samples"
    return f"p50 {fmt(d.get('p50'))} {unit}, p99 {fmt(d.get('p99'))} {unit} (n = {d['n']:,})"


def load_of(r: dict[str, Any]) -> str:
    for key in ("load_avg_1m", "load_average_1m_at_end", "load_avg_1m_before_after"):
        v = r.get(key)
        if isinstance(v, dict):
            return ", ".join(f"{k} {fmt(x)}" for k, x in v.items())
        if isinstance(v, list):
            return " -> ".join(fmt(x) for x in v)
        if v is not None:
            return fmt(v)
    m = re.search(r"load average at the end: ([\d.]+)", r.get("notes", ""))
    return m.group(1) if m else "not recorded"
