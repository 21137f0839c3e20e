"""The claim statements: each variant restricts every branch to the worker's channels."""

from __future__ import annotations

import pytest

from notifier.ledger.sql import CHANNEL_FILTERS, claim_sql, fair_claim_sql


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
@pytest.mark.parametrize("kind", ["email", "chat"])
def test_a_kinds_claim_filters_both_the_due_and_the_expired_rows(dialect: str, kind: str) -> None:
    # The claim finds the two kinds of claimable rows in two branches (each by its index);
    # PostgreSQL's fair claim ranks them in one clause.
    assert claim_sql(dialect, kind).count(CHANNEL_FILTERS[kind]) == 2
    fair_branches = 2 if dialect == "sqlite" else 1
    assert fair_claim_sql(dialect, kind, 0).count(CHANNEL_FILTERS[kind]) == fair_branches
    other = CHANNEL_FILTERS["chat" if kind == "email" else "email"]
    assert other not in claim_sql(dialect, kind)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_claim_of_every_kind_has_no_channel_filter(dialect: str) -> None:
    for sql in (claim_sql(dialect, None), fair_claim_sql(dialect, None, 2)):
        assert not any(f in sql for f in CHANNEL_FILTERS.values())


def test_the_fair_claim_names_each_channels_own_room() -> None:
    sql = fair_claim_sql("sqlite", "chat", 2)
    assert "CASE channel WHEN :c0 THEN :r0 WHEN :c1 THEN :r1 ELSE :per_channel END" in sql
