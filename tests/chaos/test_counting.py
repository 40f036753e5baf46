"""The rows' figures from plain receipts (no services): the suite's own counting can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos import probe, report, scenario
from tests.chaos.infra import Receipt

RND = scenario.Round("f", "CH99", price_rule=3, close_rule=4, channels={"email": 1, "webhook": 2}, t0_ms=1_000_000)
OWED = 2 * scenario.CYCLES * 2


def receipts_of(rnd: scenario.Round, at: float = 0.0) -> list[Receipt]:
    out = []
    for (rule, value), ids in rnd.expected().items():
        text = f"chaos rule={rule} value={value}"
        out.append(Receipt("webhook", ids["webhook"], json.dumps({"text": text}), at))
        out.append(Receipt("email", ids["email"], text, at))
    return out


def test_the_sequence_owes_two_notifications_per_alert_two_alerts_per_crossing() -> None:
    assert len(RND.alerts()) == 2 * scenario.CYCLES
    assert scenario.count(RND, receipts_of(RND)) == scenario.Tally(OWED, OWED, 0, 0, 0)


def test_a_missing_notification_is_lost() -> None:
    t = scenario.count(RND, receipts_of(RND)[1:])
    assert (t.received, t.lost) == (OWED - 1, 1)


def test_same_id_copies_are_copies_not_duplicates() -> None:
    got = receipts_of(RND)
    t = scenario.count(RND, got + got[:3])
    assert (t.received, t.duplicated, t.copies) == (OWED, 0, 3)


def test_a_copy_under_another_id_or_with_other_content_is_duplicated() -> None:
    got = receipts_of(RND)
    other_id = Receipt(got[0].kind, got[0].msg_id + "x", got[0].content, 0.0)
    other_text = Receipt(got[1].kind, got[1].msg_id, got[1].content + " again", 0.0)
    assert scenario.count(RND, got + [other_id, other_text]).duplicated == 2


def test_a_notification_of_no_owed_alert_is_duplicated() -> None:
    stray = Receipt("email", "<stray@tickerbell>", "chaos rule=3 value=160.0", 0.0)
    assert scenario.count(RND, receipts_of(RND) + [stray]).duplicated == 1


def test_other_rounds_receipts_are_not_counted() -> None:
    other = scenario.Round("g", "CH98", 5, 6, {"email": 1, "webhook": 2}, 2_000_000)
    assert scenario.count(RND, receipts_of(RND) + receipts_of(other)) == scenario.Tally(OWED, OWED, 0, 0, 0)


def test_the_split_counts_first_arrivals_before_and_after_the_fault() -> None:
    early, late = receipts_of(RND, at=10.0), receipts_of(RND, at=30.0)
    t = scenario.count(RND, early[:5] + late[5:] + late[:2], fault_at=20.0)
    assert (t.before, t.after, t.copies) == (5, OWED - 5, 2)   # a late copy does not move a first arrival


def test_live_alert_events_count_by_alert_id() -> None:
    events = [({"id": a, "rule_id": rule, "value": value}, 1.0) for (rule, value), a in RND.alerts().items()]
    assert scenario.count_live(RND, events) == scenario.Tally(2 * scenario.CYCLES, 2 * scenario.CYCLES, 0, 0, 0)
    stray = ({"id": "nope", "rule_id": 3, "value": 1}, 1.0)
    t = scenario.count_live(RND, events[2:] + events[1:2] + events[1:2] + [stray])
    assert (t.lost, t.copies, t.duplicated) == (1, 1, 1)


def test_the_whole_history_counts_every_round_and_strays() -> None:
    other = scenario.Round("g", "CH98", 5, 6, {"email": 1, "webhook": 2}, 2_000_000)
    owed = {**scenario.owed_notifications(RND), **scenario.owed_notifications(other)}
    got = receipts_of(RND) + receipts_of(other)
    assert scenario.count_all(owed, got) == scenario.Tally(2 * OWED, 2 * OWED, 0, 0, 0)
    t = scenario.count_all(owed, got[2:] + got[-1:] + [Receipt("webhook", "x", "no key here", 0.0)])
    assert (t.lost, t.copies, t.duplicated) == (2, 1, 1)


def test_spark_in_flight_reads_the_checkpoint(tmp_path: Path) -> None:
    for batch, end in ((0, 5), (1, 9)):
        (tmp_path / "offsets").mkdir(exist_ok=True)
        (tmp_path / "offsets" / str(batch)).write_text(f'v1\n{{}}\n{{"t.ticks":{{"0":{end},"1":0}}}}\n')
    (tmp_path / "commits").mkdir()
    (tmp_path / "commits" / "0").write_text("v1\n{}\n")
    assert probe.spark_in_flight(tmp_path, "t.ticks") == probe.SparkBatch(1, 4)
    (tmp_path / "commits" / "1").write_text("v1\n{}\n")
    assert probe.spark_in_flight(tmp_path, "t.ticks") is None


def test_the_generator_rewrites_only_between_the_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{report.BEGIN}\nold table\n{report.END}\nafter\n")
    monkeypatch.setattr(report, "README", readme)
    monkeypatch.setattr(report, "PAGE", tmp_path / "faults.md")
    t = scenario.count(RND, receipts_of(RND))
    row = scenario.Row.of("none (baseline)", "-", "-", "-", "receivers", t)
    report.render({"rows": [row.doc()], "soak": {}})
    text = readme.read_text()
    assert text.startswith(f"before\n{report.BEGIN}\n```\n") and text.endswith(f"{report.END}\nafter\n")
    assert "old table" not in text and "none (baseline)" in text and str(OWED) in text
    assert "| none (baseline) |" in (tmp_path / "faults.md").read_text()
