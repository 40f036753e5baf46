"""The generated README table and the end-to-end section of docs/performance.md (pure: from result dicts)."""

from __future__ import annotations

from typing import Any

from bench.readme import BEGIN, END, render_readme
from bench.report_e2e import e2e, e2e_reading
from bench.search import judge

LAT = {"tick_to_alert": {"n": 412, "p50": 21.0, "p99": 44.0, "max": 60.0},
       "tick_to_webhook": {"n": 398, "p50": 90.0, "p99": 180.0, "max": 200.0},
       "tick_to_browser": {"n": 1500, "p50": 120.0, "p99": 240.0, "max": 300.0},
       "bar_close_to_metrics": {"n": 30000, "p50": 900.0, "p99": 1700.0, "max": 1900.0},
       "bar_close_to_metrics_slowest_bar_per_close": {"n": 30, "p50": 950.0, "p99": 1750.0, "max": 1750.0}}


def probe(n: int, rate: int, latency: dict[str, Any]) -> dict[str, Any]:
    aims = judge(latency, 300)
    return {"probe": n, "offered_ticks_per_s": rate, "achieved_ticks_per_s": rate, "seconds": 30.0,
            "engine_kept_up": True, "latency_ms": latency, "aims": aims, "passed": all(a["met"] for a in aims.values()),
            "processes": {"alerts": {"cpu_cores": 0.2, "rss_mib_peak": 90.0}}, "load_avg_1m": [1.0, 1.2],
            "ceiling": {"unpaced": {"produce_msgs_per_s": 300000, "round_trip_msgs_per_s": 150000},
                        "paced": {"latency_ms": {"n": 6000, "p50": 3.0, "p99": 9.0, "max": 12.0}}}}


def result() -> dict[str, Any]:
    slow = {**LAT, "tick_to_alert": {"n": 700, "p50": 40.0, "p99": 95.0, "max": 140.0}}
    return {"git": "abc1234", "date": "2026-12-01T23:00:00+00:00", "probes": [probe(0, 4000, LAT), probe(1, 8000, slow)],
            "search": {"best_ticks_per_s": 4000, "lowest_failing_ticks_per_s": 8000, "stopped": "bracket within 15%"},
            "e2e_all_aims_ticks_per_s": 4000, "ceiling_round_trip_msgs_per_s_median": 150000,
            "ceiling_round_trip_msgs_per_s_range": [140000, 160000], "ratio_e2e_to_ceiling": 0.027,
            "aims_p99_ms": {"tick_to_alert": 50.0}, "setup": {"symbols": 1000, "rules": 10000, "min_samples_per_path": 300}}


def test_readme_is_rewritten_only_between_the_markers() -> None:
    text = f"# Title\n\nintro\n\n{BEGIN}\n| old | table |\n|---|---|\n| 1 | 2 |\n{END}\n\n## Next\nkept\n"
    out = render_readme(text, {"e2e": result()})
    assert out.startswith("# Title\n\nintro\n\n" + BEGIN) and out.endswith(END + "\n\n## Next\nkept\n")
    inside = out[out.index(BEGIN):out.index(END)]
    assert "| old | table |" not in inside
    assert "**4,000** ticks/s" in inside and "`abc1234`" in inside
    assert "tick → alert p50 21.0 ms, p99 44.0 ms (n = 412)" in inside
    assert render_readme(out, {"e2e": result()}) == out, "rendering twice changes nothing"


def test_readme_without_markers_is_left_alone() -> None:
    assert render_readme("no markers here\n", {"e2e": result()}) == "no markers here\n"


def test_e2e_section_shows_every_p99_with_its_n_and_the_verdicts() -> None:
    text = e2e(result())
    assert "Highest rate at which every path met its aim: 4,000 ticks/s" in text
    assert "21.0 / 44.0 (n=412) met" in text and "40.0 / 95.0 (n=700) **missed**" in text
    assert "1,750 (n=30)" in text
    reading = e2e_reading(result())
    assert reading[0].startswith("With the whole stack running, every path met its aim up to 4,000 ticks/s")
    assert any(line.startswith("At 8,000 ticks/s: tick -> alert (p99 95.0 ms, aim under 50 ms)") for line in reading)
