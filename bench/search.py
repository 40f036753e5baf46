"""The highest offered rate at which every path meets its aim, found by search (pure: no Kafka, no clock).

bench/e2e.py supplies a probe (run the stack at one rate, answer whether every
path met its aim); :func:`search` decides which rates to try: doubling from a
start rate while probes pass (halving while they fail), then bisection between
the highest pass and the lowest failure, within a bounded number of probes.
:func:`judge` is the verdict of one probe's latencies against the aims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# p99 aims of each path, in ms (issue 17): bar close -> metrics, tick -> alert, tick -> webhook, tick -> browser
AIMS_P99_MS: dict[str, float] = {
    "bar_close_to_metrics": 2000.0,
    "tick_to_alert": 50.0,
    "tick_to_webhook": 250.0,
    "tick_to_browser": 250.0,
}


def judge(latency_ms: dict[str, dict[str, Any]], min_n: int,
          aims: dict[str, float] = AIMS_P99_MS) -> dict[str, dict[str, Any]]:
    """Each aimed path's verdict: met when it has at least ``min_n`` samples and its p99 is under the aim."""
    out: dict[str, dict[str, Any]] = {}
    for path, aim in aims.items():
        d = latency_ms.get(path) or {}
        n = int(d.get("n") or 0)
        p99 = d.get("p99")
        if n < min_n:
            why: str | None = f"{n} samples, fewer than {min_n}"
        elif p99 is None or p99 >= aim:
            why = f"p99 {p99} ms, aim under {aim:g} ms"
        else:
            why = None
        out[path] = {"aim_p99_ms": aim, "n": n, "p50": d.get("p50"), "p99": p99, "met": why is None, "why": why}
    return out


@dataclass(frozen=True)
class SearchPlan:
    start: int = 1000          # ticks/s of the first probe
    floor: int = 250           # do not halve below this
    top: int = 64000           # do not double above this
    max_probes: int = 8
    resolution: float = 0.15   # stop bisecting once the lowest failure is within this fraction of the highest pass
    step: int = 100            # rates are multiples of this (the producer paces in 10 ms slices)

    def rounded(self, rate: float) -> int:
        return max(self.step, int(round(rate / self.step)) * self.step)


@dataclass
class SearchOutcome:
    best: int | None = None             # highest rate that passed
    lowest_failure: int | None = None   # lowest rate that failed above it
    probes: list[tuple[int, bool]] = field(default_factory=list)
    stopped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"best_ticks_per_s": self.best, "lowest_failing_ticks_per_s": self.lowest_failure,
                "probes": [{"offered_ticks_per_s": r, "passed": ok} for r, ok in self.probes], "stopped": self.stopped}


def search(probe: Callable[[int], bool], plan: SearchPlan = SearchPlan()) -> SearchOutcome:
    """Run probes (each a whole stack run at one rate) and return the highest rate that passed.

    Assumes that a rate that fails would fail at any higher rate; each probe is asked once.
    """
    out = SearchOutcome()

    def run(rate: int) -> bool:
        ok = probe(rate)
        out.probes.append((rate, ok))
        if ok:
            out.best = rate if out.best is None else max(out.best, rate)
        elif out.lowest_failure is None or rate < out.lowest_failure:
            out.lowest_failure = rate
        return ok

    rate = plan.rounded(plan.start)
    while True:  # bracket: double while passing, halve while failing
        if len(out.probes) >= plan.max_probes:
            out.stopped = "probe budget spent while bracketing"
            return out
        if run(rate):
            if out.lowest_failure is not None:
                break
            if plan.rounded(rate * 2) > plan.top:
                out.stopped = f"passed at the plan's top rate ({plan.top}/s)"
                return out
            rate = plan.rounded(rate * 2)
        else:
            if out.best is not None:
                break
            half = plan.rounded(rate / 2)
            if half < plan.floor or half >= rate:
                out.stopped = f"failed down to the plan's floor ({plan.floor}/s)"
                return out
            rate = half
    while True:  # bisect between the highest pass and the lowest failure
        lo, hi = out.best, out.lowest_failure
        assert lo is not None and hi is not None
        if hi <= lo * (1 + plan.resolution):
            out.stopped = f"bracket within {plan.resolution:.0%}"
            return out
        mid = plan.rounded((lo + hi) / 2)
        if mid <= lo or mid >= hi:
            out.stopped = "bracket narrower than the rate step"
            return out
        if len(out.probes) >= plan.max_probes:
            out.stopped = "probe budget spent while bisecting"
            return out
        run(mid)
