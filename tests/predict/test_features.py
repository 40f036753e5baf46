"""No look-ahead: changing the future must not change any feature, window or scaler of the past."""

from __future__ import annotations

import numpy as np
import pytest

from predict.dataset import build_samples, time_quantile
from predict.features import (
    FEATURES, Scaler, compute_features, make_windows, min_history, targets, window_ends,
)
from tests.predict.synthetic import ar1_series, random_walk_series

CUTS = (25, 60, 200, 399)


def _perturb_from(ohlcv: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = ohlcv.copy()
    out[k:, :4] *= np.exp(rng.normal(0, 0.05, (len(out) - k, 1)))
    out[k:, 4] *= rng.uniform(0.1, 10, len(out) - k)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("k", CUTS)
def test_features_of_bars_before_a_change_do_not_change(k: int) -> None:
    s = random_walk_series("X", n=400)
    a, b = compute_features(s.ohlcv), compute_features(_perturb_from(s.ohlcv, k))
    assert _same(a[:k], b[:k])
    assert not _same(a[k:], b[k:])  # the perturbation is real


@pytest.mark.parametrize("k", CUTS)
def test_targets_before_a_change_do_not_change(k: int) -> None:
    s = random_walk_series("X", n=400)
    (ya, sa), (yb, sb) = targets(s.ohlcv), targets(_perturb_from(s.ohlcv, k))
    assert _same(sa[:k], sb[:k])
    assert _same(ya[:k - 1], yb[:k - 1])  # y[k-1] is the return into bar k: the target, by design


@pytest.mark.parametrize("k", CUTS)
def test_windows_ending_before_a_change_do_not_change(k: int) -> None:
    s = random_walk_series("X", n=400)
    fa, fb = compute_features(s.ohlcv), compute_features(_perturb_from(s.ohlcv, k))
    ends = window_ends(fa, 10)
    early = ends[ends < k]
    assert _same(make_windows(fa, early, 10), make_windows(fb, early, 10))


def test_window_ends_need_full_warm_up() -> None:
    s = random_walk_series("X", n=100)
    feats = compute_features(s.ohlcv)
    assert feats.shape == (100, len(FEATURES))
    ends = window_ends(feats, 10)
    assert ends[0] == min_history(10) - 1  # the first window needs min_history bars
    assert np.isfinite(make_windows(feats, ends, 10)).all()
    assert np.isnan(feats[:ends[0] - 9]).any(axis=1).all()


def test_batched_features_equal_per_series_features() -> None:
    a, b = random_walk_series("A", n=80, seed=1), random_walk_series("B", n=80, seed=2)
    batch = compute_features(np.stack([a.ohlcv, b.ohlcv]))
    assert _same(batch[0], compute_features(a.ohlcv)) and _same(batch[1], compute_features(b.ohlcv))


def test_scaler_fitted_before_a_cutoff_ignores_everything_after_it() -> None:
    s = ar1_series("A", n=600)
    cut_index = 450
    changed = type(s)(s.symbol, s.bar_seconds, s.start_ms, _perturb_from(s.ohlcv, cut_index))
    sa, sb = build_samples([s], 10), build_samples([changed], 10)
    cutoff = int(s.start_ms[cut_index])
    ta, tb = sa.before(cutoff), sb.before(cutoff)
    assert len(ta) == len(tb) and len(ta) > 300
    assert _same(ta.x, tb.x) and _same(ta.y, tb.y)
    assert Scaler.fit(ta.x[:, -1, :]) == Scaler.fit(tb.x[:, -1, :])
    assert Scaler.fit(sa.x[:, -1, :]) != Scaler.fit(sb.x[:, -1, :])  # fitting on all would see the change
    # and scaled values of the early windows are identical too
    sc = Scaler.fit(ta.x[:, -1, :])
    assert _same(sc.transform(ta.x), sc.transform(tb.x))


def test_training_samples_before_a_cutoff_have_targets_before_it() -> None:
    s = build_samples([ar1_series("A", n=500), ar1_series("B", n=300, seed=3)], 10)
    cut = time_quantile(s, 0.7)
    train = s.before(cut)
    assert (train.target_start_ms < cut).all() and (train.base_start_ms < cut).all()
    assert set(train.symbol.tolist()) == {"A", "B"}


def test_scaler_standardises_and_round_trips() -> None:
    rows = np.random.default_rng(0).normal(5, 3, (1000, 4))
    sc = Scaler.fit(rows)
    z = sc.transform(rows)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-9) and np.allclose(z.std(axis=0), 1, atol=1e-9)
    assert Scaler.from_dict(sc.to_dict()) == sc
    assert sc.transform(np.full((1, 4), 1e9)).max() == sc.clip


@pytest.mark.parametrize("fn", ["sum", "mean", "std"])
def test_running_sum_windows_match_the_direct_computation(fn: str) -> None:
    from numpy.lib.stride_tricks import sliding_window_view

    from predict.features import _trailing

    x = np.random.default_rng(0).normal(0, 0.01, (3, 300))
    x[:, 0] = np.nan
    x[1, 50] = np.nan
    ref = np.full(x.shape, np.nan)
    ref[..., 19:] = getattr(sliding_window_view(x, 20, axis=-1), fn)(axis=-1)
    got = _trailing(x, 20, fn)
    assert np.array_equal(np.isnan(ref), np.isnan(got))
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-15)
