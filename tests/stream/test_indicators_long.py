"""sma_50/sma_200/ema_50/ema_200: pandas references, step == compute, older checkpoints."""

from __future__ import annotations

import msgspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.indicators import BAR_FIELDS, FIELDS, LONG_FIELDS, IndicatorState, compute, step, to_optional
from tests.stream.test_indicators import fold, random_walk, rows_of

LONG = ("sma_50", "sma_200", "ema_50", "ema_200")


def sma_pandas(closes: list[float], n: int) -> list[float | None]:
    out = pd.Series(closes).rolling(n).mean().tolist()
    return [None if np.isnan(x) else x for x in out]


def ema_ta_lib(closes: list[float], n: int) -> list[float | None]:
    """TA-Lib's EMA written out: None before bar n, the SMA of the first n at bar n, then the recurrence."""
    out: list[float | None] = [None] * len(closes)
    if len(closes) < n:
        return out
    alpha = 2.0 / (n + 1)
    ema = sum(closes[:n]) / n
    out[n - 1] = ema
    for i in range(n, len(closes)):
        ema = alpha * closes[i] + (1 - alpha) * ema
        out[i] = ema
    return out


def ema_pandas(closes: list[float], n: int) -> list[float | None]:
    """pandas ewm(adjust=False) started from the SMA of the first n closes."""
    if len(closes) < n:
        return [None] * len(closes)
    seeded = [float(np.mean(closes[:n]))] + closes[n:]
    ewm: list[float] = pd.Series(seeded).ewm(span=n, adjust=False).mean().tolist()
    return [None] * (n - 1) + ewm


def assert_series(got: list[float | None], want: list[float | None], name: str) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None, f"bar {i} {name}: expected None, got {g}"
        else:
            assert g == pytest.approx(w, rel=1e-10, abs=1e-10), f"bar {i} {name}"


def test_long_windows_are_in_the_fields_the_bar_carries() -> None:
    from events.contract import Bar

    assert LONG_FIELDS == LONG and BAR_FIELDS == FIELDS + LONG
    assert set(BAR_FIELDS) <= set(Bar.__struct_fields__)


def test_sma_50_and_200_match_pandas_rolling_mean() -> None:
    closes, volumes = random_walk(320, seed=11)
    values = rows_of(compute(closes, volumes))
    for n in (50, 200):
        assert_series([v[f"sma_{n}"] for v in values], sma_pandas(closes, n), f"sma_{n}")


def test_ema_50_and_200_match_ta_lib_recurrence_and_pandas_ewm() -> None:
    closes, volumes = random_walk(320, seed=12)
    values = rows_of(compute(closes, volumes))
    for n in (50, 200):
        got = [v[f"ema_{n}"] for v in values]
        assert_series(got, ema_ta_lib(closes, n), f"ema_{n}")
        assert_series(got, ema_pandas(closes, n), f"ema_{n}")


def test_known_values_of_a_linear_series() -> None:
    closes = [float(x) for x in range(1, 251)]  # 1, 2, ..., 250
    values = rows_of(compute(closes, [1.0] * 250))
    assert values[48]["sma_50"] is None and values[49]["sma_50"] == pytest.approx(25.5)
    assert values[199]["ema_200"] == pytest.approx(100.5)  # seeded with the SMA of 1..200
    assert values[-1]["sma_200"] == pytest.approx(150.5)
    # once seeded on a line, the EMA stays exactly (n - 1) / 2 behind the close
    assert values[-1]["ema_50"] == pytest.approx(250 - 24.5)
    assert values[-1]["ema_200"] == pytest.approx(250 - 99.5)


def test_incremental_equals_batch_bit_for_bit_past_bar_200() -> None:
    closes, volumes = random_walk(260, seed=13)
    assert fold(closes, volumes) == rows_of(compute(closes, volumes))


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 1e6), st.floats(0.0, 1e9)), min_size=195, max_size=215))
def test_incremental_equals_batch_on_arbitrary_long_series(bars: list[tuple[float, float]]) -> None:
    closes, volumes = [b[0] for b in bars], [b[1] for b in bars]
    assert fold(closes, volumes) == rows_of(compute(closes, volumes))


class OldState(msgspec.Struct, array_like=True):
    """IndicatorState as checkpoints before the long windows stored it (26 closes, no ema_50/200)."""

    n: int
    closes: list[float]
    volumes: list[float]
    ema_12: float | None
    ema_26: float | None
    avg_gain: float | None
    avg_loss: float | None


def test_an_older_checkpoint_decodes_and_the_long_windows_warm_up_from_its_closes() -> None:
    closes, volumes = random_walk(330, seed=14)
    state = IndicatorState()
    for c, v in zip(closes[:100], volumes[:100]):
        (state,), _ = step([state], [c], [v])
    old = OldState(state.n, state.closes[-26:], state.volumes, state.ema_12, state.ema_26,
                   state.avg_gain, state.avg_loss)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=IndicatorState)
    assert state.n == 100 and state.ema_50 is None and state.ema_200 is None
    want = rows_of(compute(closes, volumes))
    got = []
    for c, v in zip(closes[100:], volumes[100:]):
        (state,), values = step([state], [c], [v])
        got.append(to_optional(values, 0))
    short = list(FIELDS)
    assert [{f: r[f] for f in short} for r in got] == [{f: r[f] for f in short} for r in want[100:]]
    # 26 closes kept at the upgrade: sma_50 / ema_50 come back after 24 more bars, sma_200 after 174
    assert got[22]["sma_50"] is None and got[22]["ema_50"] is None
    assert got[23]["sma_50"] == want[123]["sma_50"]
    assert got[23]["ema_50"] == got[23]["sma_50"]  # re-seeded with the SMA of the last 50
    assert got[172]["sma_200"] is None and got[173]["sma_200"] == want[273]["sma_200"]
    assert got[173]["ema_200"] == got[173]["sma_200"]
    # from then on the gap to the uninterrupted EMA shrinks by (1 - alpha) per bar, exactly
    gap_then = got[23]["ema_50"] - want[123]["ema_50"]  # type: ignore[operator]
    gap_now = got[-1]["ema_50"] - want[-1]["ema_50"]  # type: ignore[operator]
    assert gap_then != 0
    assert gap_now / gap_then == pytest.approx((1 - 2 / 51) ** (len(got) - 1 - 23), rel=1e-6)
