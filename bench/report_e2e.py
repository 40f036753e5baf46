"""The end-to-end, alert-engine and profile sections of docs/performance.md (from e2e/alerts/profiles.json)."""

from __future__ import annotations

from typing import Any

from bench.report_fmt import Rows, fmt, lat, table

PATH_NAMES = {"tick_to_alert": "tick -> alert", "tick_to_webhook": "tick -> webhook",
              "tick_to_browser": "tick -> browser", "bar_close_to_metrics": "bar close -> metrics"}


def verdict_cell(d: dict[str, Any] | None, aim: dict[str, Any] | None) -> str:
    if not d or not d.get("n"):
        return "no samples" + (" (**missed**)" if aim else "")
    cell = f"{fmt(d.get('p50'))} / {fmt(d.get('p99'))} (n={d['n']:,})"
    return cell + ("" if not aim else " met" if aim.get("met") else " **missed**")


def best_probe(r: dict[str, Any]) -> dict[str, Any] | None:
    best = r.get("e2e_all_aims_ticks_per_s")
    return next((p for p in r.get("probes", []) if p.get("passed") and p.get("offered_ticks_per_s") == best), None)


def stopped_why(s: dict[str, Any]) -> str:
    if s.get("aborted"):
        return f"**aborted**: {s['aborted']}"
    return str(s.get("stopped") or f"fixed rates {s.get('fixed_rates')}")


def e2e(r: dict[str, Any]) -> str:
    if "probes" not in r:
        return ("Results in the format of the fixed-step benchmark this one replaced: re-run "
                "`PYTHONPATH=. .venv/bin/python -m bench e2e` for the search.")
    s = r.get("search", {})
    best = r.get("e2e_all_aims_ticks_per_s")
    rng = r.get("ceiling_round_trip_msgs_per_s_range") or [None, None]
    text: str = (f"**Highest rate at which every path met its aim: {fmt(best) + ' ticks/s' if best else 'none probed'}** "
            f"over {fmt(r.get('setup', {}).get('symbols'))} symbols and {fmt(r.get('setup', {}).get('rules'))} rules "
            f"(lowest failing rate: {fmt(s.get('lowest_failing_ticks_per_s'))}; {len(r['probes'])} probes; "
            f"search stopped: {stopped_why(s)}). Bare-Kafka round trip "
            f"measured right after each probe: median {fmt(r.get('ceiling_round_trip_msgs_per_s_median'))} msgs/s "
            f"(range {fmt(rng[0])}–{fmt(rng[1])}); ratio {fmt(r.get('ratio_e2e_to_ceiling'))}.\n\n")
    rows: Rows = []
    for p in r["probes"]:
        L, A = p.get("latency_ms", {}), p.get("aims", {})
        closes = L.get("bar_close_to_metrics_slowest_bar_per_close", {})
        rows.append([p["probe"], p["offered_ticks_per_s"], p["achieved_ticks_per_s"], p.get("seconds"),
                     p.get("settled"), p.get("engine_kept_up"), *[verdict_cell(L.get(k), A.get(k)) for k in PATH_NAMES],
                     f"{fmt(closes.get('p99'))} (n={fmt(closes.get('n'))})", p.get("passed"),
                     fmt((p.get("load_avg_1m") or [None])[-1])])
    text += table(["probe", "offered ticks/s", "produced ticks/s", "s", "backlog drained after", "engine kept up",
                   *[f"{v} ms p50 / p99 (n)" for v in PATH_NAMES.values()],
                   "slowest bar per close p99 ms (closes)", "passed", "load 1m"], rows)
    aims = r.get("aims_p99_ms", {})
    text += ("\n\nAims (p99): " + ", ".join(f"{PATH_NAMES.get(k, k)} < {fmt(v)} ms" for k, v in aims.items())
             + f", each with at least {fmt(r.get('setup', {}).get('min_samples_per_path'))} samples; a probe passes "
             "when the producer reached the offered rate, the alert engine's lag on `ticks` did not grow (slope of the "
             "second half under 2 % of the rate, lag at the end under one second of ticks) and every path met its "
             "aim. Latencies are from the moment the load generator produced the tick (wall clock, one process): to "
             "the firing alert on `alerts` (read_committed), to the webhook POST at the loopback receiver, to the "
             "Socket.IO `update` carrying that tick's price (includes the bridge's 100 ms coalescing), and from the "
             "production of the tick that closes a bar (bar end + lateness) to its metrics event. The bars of one "
             "close come out of one micro-batch, so they are not independent: the slowest bar of each close is shown "
             "beside, with the number of closes as its n.")
    text += "\n\nBare Kafka right after each probe (" + r.get("setup", {}).get("ceiling", "") + "):\n\n"
    text += table(["probe", "unpaced produce msgs/s", "unpaced round trip msgs/s", "paced at the probe's rate: latency ms"],
                  [[p["probe"], p.get("ceiling", {}).get("unpaced", {}).get("produce_msgs_per_s"),
                    p.get("ceiling", {}).get("unpaced", {}).get("round_trip_msgs_per_s"),
                    lat(p.get("ceiling", {}).get("paced", {}).get("latency_ms"))] for p in r["probes"]])
    names = list(r["probes"][0].get("processes", {})) if r["probes"] else []
    text += ("\n\nCPU (cores) / peak RSS (MiB) per process over each probe, each process tree summed (the Kafka "
             "broker, Redis and PostgreSQL are the shared services, counted whole):\n\n")
    text += table(["probe", *names], [[f"{p['probe']}: {fmt(p['offered_ticks_per_s'])}/s", *[
        f"{fmt(p['processes'].get(n, {}).get('cpu_cores'))} / {fmt(p['processes'].get(n, {}).get('rss_mib_peak'))}"
        for n in names]] for p in r["probes"]])
    setup = r.get("setup", {})
    if setup:
        text += (f"\n\nSetup: processes {', '.join(setup.get('processes', []))}; {fmt(setup.get('rules'))} rules, of "
                 f"which {fmt(setup.get('firing_rules'))} fire (cooldown {setup.get('firing_rule_cooldown_s')} s) to a "
                 f"loopback webhook; {setup.get('partitions')} partitions; {setup.get('bar_seconds')} s bars, "
                 f"{setup.get('lateness_ms')} ms lateness; probes of {setup.get('probe_s')} s (min, max); browser = "
                 f"python-socketio client in the rooms of {', '.join(setup.get('browser_rooms', []))}. Left out: "
                 f"{setup.get('left_out')}.")
    return text


def e2e_reading(r: dict[str, Any]) -> list[str]:
    if "probes" not in r:
        return ["The end-to-end results predate the search: re-run `PYTHONPATH=. .venv/bin/python -m bench e2e`."]
    out = []
    best = r.get("e2e_all_aims_ticks_per_s")
    ratio = r.get("ratio_e2e_to_ceiling")
    out.append((f"With the whole stack running, every path met its aim up to {fmt(best)} ticks/s over "
                f"{fmt(r.get('setup', {}).get('symbols'))} symbols" if best else
                "At no probed rate did every path meet its aim")
               + (f" ({fmt(ratio)} of the bare-Kafka round trip measured beside the probes)." if ratio else "."))
    for p in r["probes"]:
        missed = [f"{PATH_NAMES.get(k, k)} ({v.get('why')})" for k, v in p.get("aims", {}).items() if not v.get("met")]
        if not p.get("engine_kept_up"):
            missed.append("the engine's lag grew")
        if p.get("achieved_ticks_per_s", 0) < 0.95 * p.get("offered_ticks_per_s", 0):
            missed.append(f"the producer reached only {fmt(p.get('achieved_ticks_per_s'))} ticks/s")
        if missed:
            out.append(f"At {fmt(p['offered_ticks_per_s'])} ticks/s: " + "; ".join(missed) + ".")
    return out


def alerts(r: dict[str, Any]) -> str:
    cap, base = r.get("engine_capacity", {}), r.get("engine_baseline_no_rules", {})
    rows: Rows = [["engine ticks/s through a backlog, no rules (Kafka + transactions alone)", base.get("ticks_per_s"), ""],
                  [f"engine ticks/s through a backlog, {fmt(r.get('rules'))} rules over {fmt(r.get('symbols'))} symbols",
                   cap.get("ticks_per_s"), ""]]
    for s in r.get("engine_sustained", []):
        rows.append([f"paced {fmt(s.get('offered_ticks_per_s'))} ticks/s (produced {fmt(s.get('achieved_ticks_per_s'))}): "
                     f"sustained {fmt(s.get('sustained'))}, lag max {fmt(s.get('lag_max'))}; tick -> alert ms",
                     lat(s.get("latency_ms")), "p99 < 50"])
    found = r.get("engine_search") or {}
    if found:
        rows.append([f"highest sustained paced rate (search, {len(found.get('runs', []))} runs: "
                     + ", ".join(f"{fmt(x['offered_ticks_per_s'])} {'ok' if x.get('sustained') else 'behind'}"
                                 for x in found.get("runs", [])) + ")", found.get("best_ticks_per_s"), ">= 20,000"])
    a2w = r.get("alert_to_webhook", {})
    rows.append([f"alert -> webhook ms at {fmt(a2w.get('offered_alerts_per_s'))} alerts/s", lat(a2w.get("latency_ms")),
                 "p99 < 100"])
    return (table(["figure (`" + r.get("engine_command", "python -m alerts engine") + "`, shipped settings)",
                   "value (p50 / p99 / max (n))", "aim"], rows)
            + "\n\nCapacity: ticks/s from the engine group's first commit to the end of the backlog (start-up and "
              "rule loading excluded). Sustained: the group's lag sampled every 0.25 s did not grow over the second "
              "half of the run.")


def profiles(r: dict[str, Any]) -> str:
    tables = r.get("tables", {})
    step = r.get("step", {})
    L = step.get("latency_ms", {})
    text = (f"Every process profiled at once for {fmt(r.get('seconds'))} s during a probe at "
            f"{fmt(r.get('rate_ticks_per_s'))} ticks/s over {fmt(step.get('symbols'))} symbols (py-spy at "
            f"{fmt(r.get('py_spy_hz'))} Hz, `--nonblocking --subprocesses`; JFR for Spark's JVM). That probe's "
            "latencies, with the profilers' own cost in them: "
            + "; ".join(f"{v} ms p50 / p99 {verdict_cell(L.get(k), None)}" for k, v in PATH_NAMES.items()) + ".\n\n")
    if r.get("error"):
        text += f"**The profilers failed**: {r['error']}\n\n"
    text += "Where each core goes (cores from /proc over the window; self time = innermost frame):\n\n"
    text += table(["process", "cores", "samples", "top functions by self time (share of the process's samples)"],
                  [[name, t.get("cpu_cores"), t.get("samples"),
                    "; ".join(f"`{row['function']}` {fmt(round(row['share'] * 100))} %" for row in t.get("top", [])[:3])]
                   for name, t in sorted(tables.items(), key=lambda kv: -(kv[1].get("cpu_cores") or 0))])
    for name, t in sorted(tables.items()):
        text += f"\n\n{name} ({t.get('profiler', '')}):\n\n" + table(
            ["function", "samples", "share", "cores"],
            [[f"`{row['function']}`", row["samples"], row["share"], row.get("cores")] for row in t.get("top", [])])
    return text
