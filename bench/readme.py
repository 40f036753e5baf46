"""The README's Performance table, generated from bench/results/*.json between its perf markers.

Only the text between ``<!-- perf:begin -->`` and ``<!-- perf:end -->`` is
rewritten; every p99 carries its n, every row the run's commit and date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.report_fmt import fmt, load_of, p99n, table

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"


def met(flag: object) -> str:
    return "met" if flag else "**not met**"


def ingest(r: dict[str, Any]) -> tuple[str, str]:
    a, w, b = r.get("aims", {}), r.get("watch_to_first_tick") or {}, r.get("backfill_through_spark") or {}
    ok = ((r.get("ingest_ticks_per_s_median") or 0) >= a.get("ingest_ticks_per_s", 0)
          and (r.get("ratio_ingest_to_bare_median") or 0) >= a.get("ratio", 0))
    figure = (f"{fmt(r.get('ingest_ticks_per_s_median'))} ticks/s (median of {fmt(r.get('rounds'))} rounds), "
              f"{fmt(r.get('ratio_ingest_to_bare_median'))} of a bare confluent-kafka produce loop in the same run; "
              f"decode + validate of a tick {fmt(r.get('decode_validate_tick_us'))} µs")
    if w:
        figure += (f"; watch → first tick p50 {fmt(w.get('p50_ms'))} ms, p99 {fmt(w.get('p99_ms'))} ms "
                   f"(n = {fmt(w.get('samples'))})")
    if b:
        figure += f"; backfill through the Spark job {fmt(b.get('bars_per_s'))} bars/s"
    aim = (f"≥ {fmt(a.get('ingest_ticks_per_s'))} ticks/s and ratio ≥ {fmt(a.get('ratio'))}: {met(ok)}"
           + (f"; watch → first tick p99 < {fmt(a.get('watch_to_first_tick_p99_ms'))} ms: "
              f"{met((w.get('p99_ms') or 1e12) < a.get('watch_to_first_tick_p99_ms', 0))}" if w else ""))
    return figure, aim


def stream(r: dict[str, Any]) -> tuple[str, str]:
    runs = [x for x in r.get("runs", []) if x.get("latency_ms_to_kafka", {}).get("n")]
    parts = [f"{fmt(x.get('symbols'))} symbols at {fmt(x.get('target_ticks_per_s'))} ticks/s (sustained "
             f"{fmt(x.get('sustained_ticks_per_s'))}/s): bar close → metrics {p99n(x.get('latency_ms_to_kafka'))}"
             for x in runs]
    aim_ms = (r.get("aims") or {}).get("latency_p99_ms", 2000)
    ok = bool(runs) and all(x["latency_ms_to_kafka"]["p99"] < aim_ms for x in runs)
    low = r.get("low_rate_run") or {}
    if (low.get("micro_batch_ms") or {}).get("n"):
        parts.append(f"micro-batch at {fmt(low.get('target_ticks_per_s'))} ticks/s {p99n(low['micro_batch_ms'])}")
    return "; ".join(parts) or "no runs", f"{r.get('target', 'bar close → metrics p99 < 2 s')}: {met(ok)}"


def alerts(r: dict[str, Any]) -> tuple[str, str]:
    parts = [f"`{r.get('engine_command', 'python -m alerts engine')}`, {fmt(r.get('rules'))} rules over "
             f"{fmt(r.get('symbols'))} symbols: {fmt(r.get('engine_capacity', {}).get('ticks_per_s'))} ticks/s "
             "through a backlog"]
    for s in r.get("engine_sustained", []):
        parts.append(f"paced {fmt(s.get('offered_ticks_per_s'))} ticks/s (sustained {fmt(s.get('sustained'))}): "
                     f"tick → alert {p99n(s.get('latency_ms'))}")
    if r.get("engine_search"):
        parts.append(f"highest sustained paced rate {fmt(r['engine_search'].get('best_ticks_per_s'))} ticks/s "
                     f"({len(r['engine_search'].get('runs', []))} runs)")
    a2w = r.get("alert_to_webhook", {})
    parts.append(f"alert → webhook {p99n(a2w.get('latency_ms'))}")
    aims = "; ".join(f"{k.replace('_', ' ')}: {met(v)}" for k, v in r.get("aims", {}).items())
    return "; ".join(parts), aims


def predict(r: dict[str, Any]) -> tuple[str, str]:
    d = r.get("latency", {}).get("1000", {})
    figure = (f"one inference batch of 1,000 symbols: whole stage {p99n(d.get('stage_ms'))}, model call "
              f"{p99n(d.get('model_call_ms'))}")
    return figure, (f"stage < {fmt(r.get('aim_1000_symbols_under_ms'))} ms: p50 {met(r.get('meets_aim_p50'))}, "
                    f"p99 {met(r.get('meets_aim_p99'))}")


def web(r: dict[str, Any]) -> tuple[str, str]:
    b, p = r.get("bridge", {}), r.get("projector", {})
    figure = (f"bridge: at most {fmt(b.get('updates_per_symbol_per_s_max'))} updates per symbol per second at "
              f"{fmt(b.get('tick_rate_per_s'))} ticks/s, tick → Redis {p99n(b.get('tick_to_redis_latency_ms'))}; "
              f"projector {fmt(p.get('bars_per_s_sqlite'))} bars/s into SQLite")
    return figure, f"about 10 updates/s: {met((b.get('updates_per_symbol_per_s_max') or 99) <= 10)}"


def e2e(r: dict[str, Any]) -> tuple[str, str]:
    if "probes" not in r:
        return "results predate the rate search: not re-run", "—"
    best = r.get("e2e_all_aims_ticks_per_s")
    probe = next((p for p in r["probes"] if p.get("passed") and p.get("offered_ticks_per_s") == best), None)
    names = {"tick_to_alert": "tick → alert", "tick_to_webhook": "tick → webhook",
             "tick_to_browser": "tick → browser", "bar_close_to_metrics": "bar close → metrics"}
    figure = (f"whole stack, {fmt(r.get('setup', {}).get('rules'))} rules over {fmt(r.get('setup', {}).get('symbols'))}"
              f" symbols: every path within its aim up to **{fmt(best) if best else 'no probed rate'}** ticks/s "
              f"({len(r['probes'])} probes)")
    if probe:
        figure += " — at that rate " + ", ".join(f"{v} {p99n(probe['latency_ms'].get(k))}" for k, v in names.items())
    figure += (f"; bare-Kafka round trip beside the probes {fmt(r.get('ceiling_round_trip_msgs_per_s_median'))} "
               f"msgs/s (ratio {fmt(r.get('ratio_e2e_to_ceiling'))})")
    aims = ", ".join(f"{names.get(k, k)} p99 < {fmt(v)} ms" for k, v in r.get("aims_p99_ms", {}).items())
    return figure, f"{aims} at ≥ 5,000 ticks/s: {met((best or 0) >= 5000)}"


def profiles(r: dict[str, Any]) -> tuple[str, str]:
    tables = sorted(r.get("tables", {}).items(), key=lambda kv: -(kv[1].get("cpu_cores") or 0))
    parts = [f"{name} {fmt(t.get('cpu_cores'))} cores" + (f" (top: `{t['top'][0]['function']}` "
                                                           f"{fmt(round(t['top'][0]['share'] * 100))} %)" if t.get("top") else "")
             for name, t in tables[:4]]
    return (f"at {fmt(r.get('rate_ticks_per_s'))} ticks/s: " + "; ".join(parts)
            + " (all processes in docs/performance.md)"), "—"


ROWS: list[tuple[str, str, Callable[[dict[str, Any]], tuple[str, str]]]] = [
    ("ingest", "ingest", ingest), ("stream", "stream", stream), ("alerts", "alerts", alerts),
    ("predict", "predict", predict), ("web", "web", web), ("e2e", "end to end", e2e),
    ("profiles", "where each core goes", profiles)]


def table_text(results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for key, label, render in ROWS:
        r = results.get(key)
        if r is None:
            continue
        figure, aim = render(r)
        rows.append([f"{label} (`{key}.json`, `{r.get('git', '?')}`, {str(r.get('date', '?'))[:10]}, load "
                     f"{load_of(r)})", figure, aim])
    return (table(["stage (results, commit, date, 1-minute load average)", "figure", "aim"], rows)
            + "\n\nGenerated by `bench/report.py` from `bench/results/*.json` (do not edit between the markers); "
              "each row names the commit it was measured at.\n")


def render_readme(text: str, results: dict[str, dict[str, Any]]) -> str:
    """``text`` with only the part between the perf markers replaced (unchanged if the markers are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return text
    return text[:start + len(BEGIN)] + "\n" + table_text(results) + text[end:]
