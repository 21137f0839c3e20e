"""Reading bounces (pure): RFC 3464 reports and plain-text notices, auto-replies left alone."""

from __future__ import annotations

import pytest

from notifier.bounces.parse import Kind, read
from tests import bounce_samples as samples

MID = "<0f1e2d3c4b5a69788796a5b4c3d2e1f0@fao.example.com>"
TO = "left@trade.example.com"
BOX = "waiban@fao.example.com"


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        (samples.POSTFIX, "5.1.1"),
        (samples.EXIM, "5.1.1"),
        (samples.EXCHANGE, "5.1.10"),
        (samples.CHINESE, ""),
    ],
    ids=["postfix", "exim", "exchange", "chinese-text"],
)
def test_a_hard_bounce_names_our_message_and_its_status(sample: str, status: str) -> None:
    verdict = read(samples.render(sample, mid=MID, to=TO, box=BOX))
    assert verdict.kind is Kind.HARD
    assert verdict.status == status
    assert MID in verdict.message_ids
    assert "0f1e2d3c4b5a69788796a5b4c3d2e1f0" in verdict.our_ids
    assert verdict.excerpt


def test_the_chinese_notice_keeps_its_reason_in_the_excerpt() -> None:
    verdict = read(samples.render(samples.CHINESE, mid=MID, to=TO, box=BOX))
    assert "收件人地址不存在" in verdict.excerpt


@pytest.mark.parametrize(
    ("sample", "kind"),
    [(samples.UNRELATED, Kind.OTHER), (samples.OUT_OF_OFFICE, Kind.AUTO_REPLY)],
    ids=["unrelated", "out-of-office"],
)
def test_mail_that_is_not_a_bounce_is_told_apart(sample: str, kind: Kind) -> None:
    verdict = read(samples.render(sample, mid=MID, to=TO, box=BOX))
    assert verdict.kind is kind and not verdict.bounce


def test_a_delayed_report_is_soft() -> None:
    raw = samples.render(samples.POSTFIX, mid=MID, to=TO, box=BOX)
    raw = raw.replace(b"Action: failed", b"Action: delayed").replace(
        b"Status: 5.1.1", b"Status: 4.4.1"
    )
    verdict = read(raw)
    assert verdict.kind is Kind.SOFT and verdict.status == "4.4.1"
