"""The benchmark's rate search and verdicts (pure: no services)."""

from __future__ import annotations

from bench.search import AIMS_P99_MS, SearchPlan, judge, search


def threshold_probe(limit: int, asked: list[int]):  # type: ignore[no-untyped-def]
    def probe(rate: int) -> bool:
        asked.append(rate)
        return rate <= limit
    return probe


def test_doubles_then_bisects_to_the_highest_passing_rate() -> None:
    asked: list[int] = []
    out = search(threshold_probe(5300, asked), SearchPlan(start=1000, max_probes=12, resolution=0.05))
    assert asked[:4] == [1000, 2000, 4000, 8000]
    assert out.best is not None and out.lowest_failure is not None
    assert out.best <= 5300 < out.lowest_failure
    assert out.lowest_failure <= out.best * 1.05
    assert out.probes == [(r, r <= 5300) for r in asked]
    assert len(set(asked)) == len(asked), "no rate is probed twice"


def test_halves_when_the_start_rate_fails() -> None:
    asked: list[int] = []
    out = search(threshold_probe(700, asked), SearchPlan(start=4000, max_probes=10, resolution=0.2))
    assert asked[:3] == [4000, 2000, 1000]
    assert asked[3] == 500
    assert out.best is not None and 500 <= out.best <= 700 and out.lowest_failure is not None
    assert out.lowest_failure > 700


def test_probe_budget_bounds_the_search() -> None:
    asked: list[int] = []
    out = search(threshold_probe(5300, asked), SearchPlan(start=1000, max_probes=5, resolution=0.001))
    assert len(asked) == 5
    assert out.stopped == "probe budget spent while bisecting"
    assert out.best is not None and out.best <= 5300


def test_nothing_passes_down_to_the_floor() -> None:
    asked: list[int] = []
    out = search(threshold_probe(100, asked), SearchPlan(start=1000, floor=250))
    assert out.best is None and asked == [1000, 500]
    assert "floor" in out.stopped


def test_everything_passes_up_to_the_top() -> None:
    asked: list[int] = []
    out = search(threshold_probe(10**9, asked), SearchPlan(start=1000, top=8000))
    assert asked == [1000, 2000, 4000, 8000] and out.best == 8000 and out.lowest_failure is None


def test_judge_needs_enough_samples_and_a_p99_under_each_aim() -> None:
    latency = {
        "tick_to_alert": {"n": 500, "p50": 20.0, "p99": 49.0},
        "tick_to_webhook": {"n": 500, "p50": 90.0, "p99": 250.0},   # at the aim: not under it
        "tick_to_browser": {"n": 120, "p50": 50.0, "p99": 80.0},    # too few samples
    }
    verdict = judge(latency, min_n=300)
    assert set(verdict) == set(AIMS_P99_MS)
    assert verdict["tick_to_alert"]["met"] is True and verdict["tick_to_alert"]["n"] == 500
    assert verdict["tick_to_webhook"]["met"] is False and "aim" in verdict["tick_to_webhook"]["why"]
    assert verdict["tick_to_browser"]["met"] is False and "fewer than 300" in verdict["tick_to_browser"]["why"]
    assert verdict["bar_close_to_metrics"]["met"] is False and verdict["bar_close_to_metrics"]["n"] == 0
