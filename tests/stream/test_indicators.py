"""stream.indicators against naive textbook implementations; warm-up; incremental == batch."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.indicators import BAR_FIELDS, FIELDS, IndicatorState, compute, step, to_optional
from tests.stream.reference import indicators_reference


def random_walk(n: int, seed: int = 1) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    closes, volumes, price = [], [], 100.0
    for _ in range(n):
        price *= math.exp(rng.gauss(0, 0.02))
        closes.append(round(price, 2))
        volumes.append(float(rng.randint(0, 5000)))
    return closes, volumes


def rows_of(values: dict[str, np.ndarray]) -> list[dict[str, float | None]]:
    n = len(values["sma_5"])
    return [to_optional(values, i) for i in range(n)]


def assert_rows_equal(got: list[dict[str, float | None]], want: list[dict[str, float | None]]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        for name in w:  # the fields the reference computes (the long windows: test_indicators_long.py)
            if w[name] is None:
                assert g[name] is None, f"bar {i} {name}: expected None, got {g[name]}"
            else:
                assert g[name] == pytest.approx(w[name], rel=1e-10, abs=1e-10), f"bar {i} {name}"


def test_batch_matches_the_reference_on_a_random_walk() -> None:
    closes, volumes = random_walk(120)
    assert_rows_equal(rows_of(compute(closes, volumes)), indicators_reference(closes, volumes))


@pytest.mark.parametrize(("name", "first_bar"), [
    ("change_pct", 2), ("sma_5", 5), ("sma_10", 10), ("sma_20", 20), ("ema_12", 12), ("ema_26", 26),
    ("macd", 26), ("volatility_20", 21), ("zscore_20", 20), ("rsi_14", 15), ("volume_avg_20", 21),
    ("volume_ratio", 21), ("sma_50", 50), ("sma_200", 200), ("ema_50", 50), ("ema_200", 200),
])
def test_warm_up_is_null_until_enough_bars(name: str, first_bar: int) -> None:
    closes, volumes = random_walk(220, seed=2)
    values = rows_of(compute(closes, volumes))
    assert all(v[name] is None for v in values[:first_bar - 1])
    assert all(v[name] is not None for v in values[first_bar - 1:])


def test_known_small_values() -> None:
    closes = [float(x) for x in range(1, 31)]  # 1, 2, ..., 30
    values = rows_of(compute(closes, [10.0] * 29 + [40.0]))
    last = values[-1]
    assert last["sma_5"] == pytest.approx(28.0)
    assert last["sma_20"] == pytest.approx(20.5)
    assert values[11]["ema_12"] == pytest.approx(6.5)  # seeded with the SMA of 1..12
    assert last["ema_12"] == pytest.approx(24.5)  # a linear series: EMA lags by (n-1)/2
    assert last["rsi_14"] == pytest.approx(100.0)  # only gains
    assert last["change_pct"] == pytest.approx(100 / 29)
    assert last["volume_avg_20"] == pytest.approx(10.0)  # current bar excluded
    assert last["volume_ratio"] == pytest.approx(4.0)
    assert last["zscore_20"] == pytest.approx(9.5 / np.std(np.arange(11, 31), ddof=1))


def test_flat_prices_give_null_not_nonsense() -> None:
    values = rows_of(compute([50.0] * 30, [0.0] * 30))
    last = values[-1]
    assert last["zscore_20"] is None  # std 0
    assert last["rsi_14"] is None  # no gains and no losses
    assert last["volume_ratio"] is None  # average volume 0
    assert last["volatility_20"] == 0.0 and last["sma_20"] == 50.0 and last["macd"] == 0.0


def test_rsi_is_wilder_smoothed_like_ta_lib() -> None:
    # 14 alternating moves seed avg_gain = avg_loss; one more up move of 2 then applies Wilder.
    closes = [10.0]
    for i in range(14):
        closes.append(closes[-1] + (1.0 if i % 2 == 0 else -1.0))
    closes.append(closes[-1] + 2.0)
    rsi = rows_of(compute(closes, [1.0] * len(closes)))
    assert rsi[14]["rsi_14"] == pytest.approx(50.0)
    gain, loss = (0.5 * 13 + 2.0) / 14, (0.5 * 13) / 14
    assert rsi[15]["rsi_14"] == pytest.approx(100 * gain / (gain + loss))


def fold(closes: list[float], volumes: list[float]) -> list[dict[str, float | None]]:
    state, out = IndicatorState(), []
    for c, v in zip(closes, volumes):
        (state,), values = step([state], [c], [v])
        out.append(to_optional(values, 0))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 1e6), st.floats(0.0, 1e9)), min_size=1, max_size=45))
def test_incremental_equals_batch_bit_for_bit(bars: list[tuple[float, float]]) -> None:
    closes, volumes = [b[0] for b in bars], [b[1] for b in bars]
    assert fold(closes, volumes) == rows_of(compute(closes, volumes))


def test_step_is_vectorised_across_symbols_at_different_warm_up_stages() -> None:
    series = [random_walk(n, seed=n) for n in (3, 15, 27, 60, 200, 230)]
    states = [IndicatorState() for _ in series]
    # advance each symbol to its own length - 1, then one vectorised step for all
    for i, (closes, volumes) in enumerate(series):
        for c, v in zip(closes[:-1], volumes[:-1]):
            (states[i],), _ = step([states[i]], [c], [v])
    _, values = step(states, [c[-1] for c, _ in series], [v[-1] for _, v in series])
    for i, (closes, volumes) in enumerate(series):
        assert to_optional(values, i) == rows_of(compute(closes, volumes))[-1]


def test_state_survives_a_serialisation_round_trip() -> None:
    import msgspec

    closes, volumes = random_walk(230, seed=9)
    state = IndicatorState()
    for c, v in zip(closes[:-1], volumes[:-1]):
        (state,), _ = step([state], [c], [v])
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=IndicatorState)
    _, values = step([state], [closes[-1]], [volumes[-1]])
    assert to_optional(values, 0) == rows_of(compute(closes, volumes))[-1]
    assert len(state.closes) == 200 and len(state.volumes) == 21
    assert set(BAR_FIELDS) == set(FIELDS) | {"sma_50", "sma_200", "ema_50", "ema_200"}
    assert all(to_optional(values, 0)[f] is not None for f in BAR_FIELDS)
