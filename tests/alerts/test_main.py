"""``python -m alerts``: the command-line defaults come from the settings sections, not the environment."""

from __future__ import annotations

from alerts.__main__ import _parser
from alerts.config import load_engine_settings


def test_engine_and_dispatch_defaults_come_from_the_engine_section() -> None:
    engine = load_engine_settings({"ALERTS_STALE_AFTER_S": "45", "DYNO": "alerts.3",
                                   "ALERTS_DISPATCH_GROUP": "d-grp"})
    args = _parser(engine).parse_args(["engine"])
    assert (args.stale_after_s, args.transactional_id, args.group) == (45, "alerts-engine-alerts.3", "alerts-engine")
    assert _parser(engine).parse_args(["dispatch"]).group == "d-grp"
    assert _parser(engine).parse_args(["engine", "--stale-after-s", "0"]).stale_after_s == 0  # the flag wins
    assert _parser(load_engine_settings({})).parse_args(["engine"]).stale_after_s == 120
