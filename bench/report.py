"""Render docs/performance.md from every bench/results/*.json (called by ``make bench`` after the modules).

One section per benchmark: its machine, date, commit, command and load, a
table of its figures, its aims met or not, and its own notes. The reading of
the figures is generated from the numbers too, so it never contradicts them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from bench import report_e2e
from bench.common import RESULTS, machine
from bench.readme import README, render_readme
from bench.report_fmt import Rows, fmt, lat, load_of, table

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
ORDER = ["ingest", "stream", "alerts", "predict", "web", "e2e", "profiles"]

__all__ = ["DOC", "README", "fmt", "lat", "main", "render", "table"]


def ingest(r: dict[str, Any]) -> str:
    aims = r.get("aims", {})
    rows: Rows = [["ingest ticks/s (median of rounds)", r.get("ingest_ticks_per_s_median"), f">= {fmt(aims.get('ingest_ticks_per_s'))}"],
            ["bare produce ticks/s (rounds)", ", ".join(fmt(x) for x in r.get("bare_produce_ticks_per_s", [])), ""],
            ["ingest / bare (median)", r.get("ratio_ingest_to_bare_median"), f">= {fmt(aims.get('ratio'))}"],
            ["decode+validate one tick (µs)", r.get("decode_validate_tick_us"), ""],
            ["encode one tick (µs)", r.get("encode_tick_us"), ""]]
    w, b = r.get("watch_to_first_tick"), r.get("backfill_through_spark")
    if w:
        rows.append([f"watch -> first tick ms p50 / p99 (n={w.get('samples')})", f"{fmt(w.get('p50_ms'))} / {fmt(w.get('p99_ms'))}",
                     f"p99 < {fmt(aims.get('watch_to_first_tick_p99_ms'))}"])
    if b:
        rows.append([f"backfill through Spark, bars/s ({fmt(b.get('history_bars'))} bars, {fmt(b.get('symbols'))} symbols)",
                     b.get("bars_per_s"), ""])
    notes = f"\n\nProducer: {r.get('producer', '')}."
    if w:
        notes += f" Watch -> first tick: {w.get('path', '')}."
    if b:
        notes += f" Backfill: {b.get('path', '')}."
    return table(["figure", "value", "aim"], rows) + notes


def stream(r: dict[str, Any]) -> str:
    rows, profile = [], []
    extra = [r[k] for k in ("low_rate_run", "capacity_run") if r.get(k)]
    for run in [*r.get("runs", []), *extra]:
        rows.append([run.get("symbols"), run.get("target_ticks_per_s"), run.get("produced_ticks_per_s"),
                     run.get("sustained_ticks_per_s"), run.get("caught_up"), run.get("drain_lag_s"),
                     lat(run.get("latency_ms_to_kafka")), run.get("bar_ends_measured"), lat(run.get("micro_batch_ms"))])
        ms = (run.get("batch_profile") or {}).get("ms_with_data") or {}
        if ms:
            profile.append([run.get("symbols"), run.get("target_ticks_per_s"),
                            *(_whole((ms.get(k) or {}).get("p50")) for k in STREAM_PROFILE_KEYS),
                            (ms.get("triggerExecution") or {}).get("n")])
    text = table(["symbols", "offered ticks/s", "produced ticks/s", "sustained ticks/s", "caught up",
                  "drain lag s", "bar close -> metrics ms p50 / p99 / max (n = symbol-bars)", "bar ends",
                  "micro-batch ms p50 / p99 / max (n)"], rows)
    if profile:
        text += ("\n\nWhere a micro-batch's time goes (p50 ms over the batches with data, from Spark's "
                 "StreamingQueryProgress durationMs; state.* summed over the stateful operator's tasks):\n\n"
                 + table(["symbols", "ticks/s", *STREAM_PROFILE_KEYS, "batches"], profile))
    notes = [f"Aim: {r.get('target', '')}. Setup: {r.get('what', '')}."]
    notes += [f"{'Low-rate' if x is r.get('low_rate_run') else 'Capacity'} row: {x.get('what', '')}." for x in extra]
    return text + "\n\n" + " ".join(notes)


def _whole(ms: float | None) -> int | None:
    return None if ms is None else int(round(ms))


STREAM_PROFILE_KEYS = ("latestOffset", "queryPlanning", "walCommit", "addBatch", "commitOffsets", "triggerExecution",
                       "state.allUpdatesTimeMs", "state.commitTimeMs")


def predict(r: dict[str, Any]) -> str:
    rows = []
    for n, d in r.get("latency", {}).items():
        rows.append([n, lat(d.get("model_call_ms")), lat(d.get("stage_ms")), lat(d.get("keras_predict_ms"))])
    text = table(["symbols per batch", "model call ms", "whole stage ms", "keras predict() ms (for comparison)"], rows)
    serve = r.get("serve_e2e", {})
    if serve:
        text += (f"\n\n`predict serve` as a loop: {fmt(serve.get('bars'))} bars over {fmt(serve.get('symbols'))} symbols "
                 f"at {fmt(serve.get('bars_per_s'))} bars/s, {fmt(serve.get('predictions_per_s'))} predictions/s. "
                 f"Model: {r.get('model', '')}; {r.get('threads', '')}. Aim: stage under "
                 f"{fmt(r.get('aim_1000_symbols_under_ms'))} ms for 1,000 symbols.")
    return text


def web(r: dict[str, Any]) -> str:
    b, p = r.get("bridge", {}), r.get("projector", {})
    rows = [["bridge: ticks/s in", b.get("tick_rate_per_s"), ""],
            ["bridge: updates per symbol per s (mean / max)",
             f"{fmt(b.get('updates_per_symbol_per_s_mean'))} / {fmt(b.get('updates_per_symbol_per_s_max'))}", "<= about 10"],
            ["bridge: tick -> Redis message queue ms p50 / p99 / max", lat(b.get("tick_to_redis_latency_ms")), ""],
            ["projector: bars/s into SQLite", p.get("bars_per_s_sqlite"), ""]]
    return table(["figure", "value", "aim"], rows)


RENDER: dict[str, Callable[[dict[str, Any]], str]] = {
    "ingest": ingest, "stream": stream, "alerts": report_e2e.alerts, "predict": predict, "web": web,
    "e2e": report_e2e.e2e, "profiles": report_e2e.profiles}
TITLES = {"ingest": "Ingest (source -> `ticks`)", "stream": "Stream (Spark: `ticks` -> bars + indicators -> `metrics`)",
          "alerts": "Alert engine and notifications", "predict": "Forecast (LSTM serve)",
          "web": "Web (bridge to Socket.IO, projector)", "e2e": "End to end (the whole running stack)",
          "profiles": "Where each core goes (CPU profiles per process, whole stack at 5,000 ticks/s)"}


def aims_line(r: dict[str, Any]) -> str:
    aims = r.get("aims")
    flags = {k: v for k, v in (aims or {}).items() if isinstance(v, bool)}
    flags.update({k: v for k, v in r.items() if k.startswith("meets_") and isinstance(v, bool)})
    if not flags:
        return ""
    return "Aims: " + "; ".join(f"{k.replace('_', ' ')}: {'met' if v else '**not met**'}" for k, v in flags.items()) + "."


def reading(results: dict[str, dict[str, Any]]) -> list[str]:
    """Plain sentences from the figures: what meets the aims, what does not."""
    out = []
    e = results.get("e2e")
    if e:
        out += report_e2e.e2e_reading(e)
    i = results.get("ingest")
    if i and i.get("aims"):
        a = i["aims"]
        met = (i.get("ingest_ticks_per_s_median") or 0) >= a.get("ingest_ticks_per_s", 0) and \
            (i.get("ratio_ingest_to_bare_median") or 0) >= a.get("ratio", 0)
        out.append(f"Ingest: {fmt(i.get('ingest_ticks_per_s_median'))} ticks/s, {fmt(i.get('ratio_ingest_to_bare_median'))} "
                   f"of a bare producer (aims {fmt(a.get('ingest_ticks_per_s'))} ticks/s and {fmt(a.get('ratio'))}): "
                   f"{'met' if met else '**not met**'}.")
    st = results.get("stream")
    if st:
        runs = [x for x in st.get("runs", []) if x.get("target_ticks_per_s") == 20000]
        worst = [(x["symbols"], x.get("latency_ms_to_kafka", {})) for x in runs if x.get("latency_ms_to_kafka", {}).get("n")]
        aim_ms = (st.get("aims") or {}).get("latency_p99_ms", 2000)
        if worst:
            p50_ok = all(d["p50"] <= aim_ms for _, d in worst)
            p99_bad = [f"{n} symbols ({fmt(d['p99'])} ms, n={d['n']:,})" for n, d in worst if d["p99"] > aim_ms]
            out.append("Stream alone at 20k ticks/s: bar close -> metrics p50 "
                       + ", ".join(f"{fmt(d['p50'])} ms ({n} symbols)" for n, d in worst)
                       + f"; the {fmt(aim_ms / 1000)} s aim is {'met' if p50_ok else '**not met**'} at p50, and at p99 "
                       + (f"**not met** for {', '.join(p99_bad)}." if p99_bad else "met."))
        low = (st.get("low_rate_run") or {}).get("micro_batch_ms") or {}
        if low.get("n"):
            out.append(f"Stream micro-batch at {fmt(st['low_rate_run'].get('target_ticks_per_s'))} ticks/s: p50 "
                       f"{fmt(low['p50'])} ms, p99 {fmt(low['p99'])} ms (n={low['n']:,} batches; aim under "
                       f"{fmt((st.get('aims') or {}).get('low_rate_micro_batch_p50_ms', 200))} ms).")
    w = results.get("web")
    if w and w.get("bridge"):
        b = w["bridge"]
        out.append(f"Bridge: at most {fmt(b.get('updates_per_symbol_per_s_max'))} updates per symbol per second "
                   f"(aim about 10) at {fmt(b.get('tick_rate_per_s'))} ticks/s; tick -> Redis p99 "
                   f"{fmt(b.get('tick_to_redis_latency_ms', {}).get('p99'))} ms.")
    for name, r in results.items():
        line = aims_line(r)
        if line and name != "e2e":
            out.append(f"{TITLES.get(name, name)} — {line}")
    out.append("Load caveat: this is a 2-core machine shared with other work; every figure moves from run to run, "
               "and the 1-minute load average recorded with each run says how busy the machine was. Treat tails "
               "(p99, max) as upper bounds of what the code does on a quiet machine, not as its limits.")
    return out


def render(results_dir: Path = RESULTS) -> str:
    results = load_results(results_dir)
    names = [n for n in ORDER if n in results] + sorted(set(results) - set(ORDER))
    m = next((r["machine"] for r in results.values() if r.get("machine")), machine())
    lines = [
        "# Performance",
        "",
        "Generated by `make bench` (`python -m bench`, then `bench/report.py`) from `bench/results/*.json`; "
        "do not edit by hand.",
        f"Rendered {datetime.now(timezone.utc).isoformat(timespec='seconds')}.",
        "",
        "## Machine",
        "",
        f"{m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory_gib')} GiB memory, Python {m.get('python')}, "
        f"{m.get('platform')}. One single-node Kafka broker (KRaft), Redis and PostgreSQL on the same machine; "
        f"the machine is shared with other engineers' jobs, so the load average is recorded with each run.",
        "",
        "## Reading",
        "",
        *[f"- {s}" for s in reading(results)],
        "- Where a stream micro-batch's time goes, before and after packing its rows: "
        "[stream-profile.md](stream-profile.md) (hand-written from measurements, with their load).",
        "",
    ]
    for name in names:
        r = results[name]
        render_one = RENDER.get(name)
        lines += [f"## {TITLES.get(name, name)}", "",
                  f"Run {r.get('date', '?')} at commit `{r.get('git', '?')}`; command `{r.get('command', '?')}`; "
                  f"1-minute load average: {load_of(r)}.", ""]
        lines.append(render_one(r) if render_one else table(
            ["figure", "value"], [[k, v] for k, v in r.items() if isinstance(v, (int, float, str)) and k not in
                                  ("benchmark", "command", "date", "git")]))
        line = aims_line(r)
        if line:
            lines += ["", line]
        for key in ("note", "notes"):
            if r.get(key):
                lines += ["", f"Note: {r[key]}"]
        lines.append("")
    return "\n".join(lines)


def load_results(results_dir: Path = RESULTS) -> dict[str, dict[str, Any]]:
    results = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return results


def main() -> Path:
    """Rewrite docs/performance.md, and the README's table between its perf markers, from the results."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    README.write_text(render_readme(README.read_text(), load_results()))
    return DOC


if __name__ == "__main__":
    print(main())
