"""The row's figures from plain receipts (no services): the suite's own counting can fail."""

from __future__ import annotations

import json

from tests.chaos import scenario
from tests.chaos.infra import Receipt

RND = scenario.Round("f", "CH99", price_rule=3, close_rule=4, channels={"email": 1, "webhook": 2}, t0_ms=1_000_000)


def receipts_of(rnd: scenario.Round) -> list[Receipt]:
    out = []
    for (rule, value), ids in rnd.expected().items():
        text = f"chaos rule={rule} value={value}"
        out.append(Receipt("webhook", ids["webhook"], json.dumps({"text": text}), 0.0))
        out.append(Receipt("email", ids["email"], text, 0.0))
    return out


def test_the_sequence_fires_two_alerts_per_crossing() -> None:
    assert len(RND.expected()) == 2 * scenario.CYCLES
    assert scenario.count(RND, receipts_of(RND)) == scenario.Row("f", 12, 12, 0, 0)


def test_a_missing_notification_is_not_delivered() -> None:
    assert scenario.count(RND, receipts_of(RND)[1:]).delivered == 11


def test_same_id_copies_are_redelivered_not_duplicated() -> None:
    got = receipts_of(RND)
    row = scenario.count(RND, got + got[:3])
    assert (row.delivered, row.duplicated, row.redelivered) == (12, 0, 3)


def test_a_copy_under_another_id_or_with_other_content_is_duplicated() -> None:
    got = receipts_of(RND)
    other_id = Receipt(got[0].kind, got[0].msg_id + "x", got[0].content, 0.0)
    other_text = Receipt(got[1].kind, got[1].msg_id, got[1].content + " again", 0.0)
    assert scenario.count(RND, got + [other_id, other_text]).duplicated == 2


def test_a_notification_of_no_expected_alert_is_duplicated() -> None:
    stray = Receipt("email", "<stray@tickerbell>", "chaos rule=3 value=160.0", 0.0)
    assert scenario.count(RND, receipts_of(RND) + [stray]).duplicated == 1


def test_other_rounds_receipts_are_not_counted() -> None:
    other = scenario.Round("g", "CH98", 5, 6, {"email": 1, "webhook": 2}, 2_000_000)
    assert scenario.count(RND, receipts_of(RND) + receipts_of(other)) == scenario.Row("f", 12, 12, 0, 0)
