"""Deterministic event ids (part of the contract, re-exported by :mod:`events.contract`).

Same parts, same id, on any machine: a replay reproduces every id, so a consumer can drop
what it has seen.
"""

from __future__ import annotations

import hashlib


def event_id(*parts: object) -> str:
    """A short, stable id from its parts (same parts, same id, on any machine)."""
    raw = "\x1f".join(str(p) for p in parts).encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def tick_id(source: str, symbol: str, seq: int) -> str:
    return f"{source}:{symbol}:{seq}"


def bar_id(symbol: str, bar_seconds: int, start_ms: int) -> str:
    return f"bar:{symbol}:{bar_seconds}:{start_ms}"


def history_bar_id(symbol: str, bar_seconds: int, start_ms: int) -> str:
    return f"hist:{symbol}:{bar_seconds}:{start_ms}"


def feed_status_id(symbol: str, ts_ms: int) -> str:
    return f"feed:{symbol}:{ts_ms}"


def watched_id(symbol: str, ts_ms: int) -> str:
    return f"watched:{symbol}:{ts_ms}"


def prediction_id(symbol: str, base_start_ms: int, horizon_bars: int, model_version: str) -> str:
    return f"pred:{symbol}:{base_start_ms}:{horizon_bars}:{model_version}"


def alert_id(rule_id: int, rule_version: int, trigger_event_id: str, state: str) -> str:
    return "alert:" + event_id(rule_id, rule_version, trigger_event_id, state)


def rule_event_id(rule_id: int, version: int) -> str:
    return f"rule:{rule_id}:{version}"
