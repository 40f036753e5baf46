"""The soak (``soak.py``) and the checker over the whole history of the session.

``make test-chaos`` runs the short soak (``CHAOS_SOAK_S``, 60 s by default); the long one is the
same test with a longer run, recorded as "long" in ``docs/faults.json``::

    CHAOS_SOAK_S=300 .venv/bin/python -m pytest tests/chaos -k soak

(runs on the same stack as the fault rounds; ``-k soak`` starts it without them).
"""

from __future__ import annotations

import os

from tests.chaos import report, scenario, soak
from tests.chaos.conftest import Chaos

SOAK_S = float(os.environ.get("CHAOS_SOAK_S", "60"))
LONG = SOAK_S >= 180


def test_soak_under_a_nemesis(chaos: Chaos) -> None:
    plan = soak.Plan(seconds=SOAK_S)
    t, result = soak.run(chaos, plan)
    assert t.owed >= 1000, t   # the workload owes enough to be struck often mid-flight
    assert t.received == t.owed and t.lost == 0, t
    assert t.duplicated == 0, t
    assert len(result["outages"]) == 3, result["outages"]
    assert len(result["kills"]) >= SOAK_S / plan.kill_every_s / 2, result["kills"]
    assert result["ticks"] >= plan.rate * SOAK_S * 0.9, result["ticks"]   # the rate held
    command = f"CHAOS_SOAK_S={SOAK_S:g} .venv/bin/python -m pytest tests/chaos -k soak" if LONG else "make test-chaos"
    report.save_soak("long" if LONG else "short", {**result, "command": command})


def test_soak_then_the_whole_history(chaos: Chaos) -> None:
    """Every notification owed by every round and soak of this session, counted by id at the end:
    none lost, no id twice for one (alert, channel), nothing unowed; copies under one id reported."""
    assert chaos.history_owed, "nothing ran before the checker"
    t = scenario.count_all(chaos.history_owed, chaos.receivers.got())
    assert t.received == t.owed and t.lost == 0, t
    assert t.duplicated == 0, t
    scope = f"{len(chaos.rows)} fault rounds + soak" if len(chaos.rows) > 1 else "soak"
    report.save_history({"scope": scope, "owed": t.owed, "received": t.received, "lost": t.lost,
                         "duplicated": t.duplicated, "copies": t.copies})
