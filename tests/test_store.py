"""The ledger's contract, run on SQLite and PostgreSQL alike (fixtures in tests/conftest_db.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from notifier.errors import NotifierError, StoreError
from notifier.keys import hook_row_key
from notifier.ledger.db import connect
from notifier.ledger.migrate import load_migrations
from notifier.ledger.models import NewDelivery, Outcome, State
from notifier.ledger.postgres import redact_url, to_pyformat
from notifier.ledger.store import HOOK_PROBE, Store
from tests.conftest_db import open_store
from tests.waiting import wait_for

LATEST = max(m.version for m in load_migrations())
# The versions present: other branches' numbers may be missing from this one (gaps are fine).
VERSIONS = [m.version for m in load_migrations()]
T0 = 1_800_000_000.0  # an arbitrary "now": the store never reads the clock


def new(key: str, *, due: float = T0, event: str = "ev", **kw: object) -> NewDelivery:
    row = NewDelivery(
        key=key,
        event_id=event,
        occurrence="2027-04-15",
        reminder_id="before-10d",
        recipient=f"{key}@example.org",
        channel="email",
        due_at=due,
        message_id=f"<{key}@notifier>",
        subject=f"subject {key}",
        message=f"MIME-Version: 1.0\r\n\r\nbody {key}",
    )
    return replace(row, **kw)  # type: ignore[arg-type]


def hook_rows(hook: str, webhook_id: str, count: int, **kw: object) -> list[NewDelivery]:
    """A webhook's rows as the outbox keys them (by position)."""
    return [new(hook_row_key(hook, webhook_id, p), **kw) for p in range(count)]


async def claim_all(
    store: Store, now: float, *, limit: int = 100, lease: float = 60.0
) -> list[int]:
    return [d.id for d in await store.claim(now=now, limit=limit, lease_seconds=lease)]


# --- schema ------------------------------------------------------------------------------------


async def test_migrate_applies_each_file_once(db_url: str) -> None:
    async with open_store(db_url, migrate=False) as store:
        assert await store.schema_version() == 0
        assert await store.migrate() == VERSIONS
        assert await store.migrate() == []
        assert await store.schema_version() == LATEST


async def test_concurrent_migrate_from_several_connections_is_safe(db_url: str) -> None:
    async def migrate() -> list[int]:
        async with open_store(db_url, migrate=False) as store:
            return await store.migrate()

    results = await asyncio.gather(*(migrate() for _ in range(4)))
    assert sorted(v for r in results for v in r) == VERSIONS


async def test_upgrade_from_version_1_keeps_rows(db_url: str) -> None:
    async with open_store(db_url, migrate=False) as store:
        assert await store.migrate(up_to=1) == [1]
        assert await store.schema_version() == 1
        await store.enqueue([new(f"k{i}", due=T0 + i) for i in range(50)], now=T0)
        await store.mark_plan_done("plan-1", now=T0)
        before = await store.list_deliveries(limit=1000)

    async with open_store(db_url, migrate=False) as store:
        assert await store.migrate() == [v for v in VERSIONS if v >= 2]
        assert await store.list_deliveries(limit=1000) == before
        assert await store.plan_done("plan-1")
        await store.unsubscribe("a@b.org", now=T0, source="test")  # a version-2 table works


async def test_receipts_written_before_version_4_still_replay_their_ids(db_url: str) -> None:
    async with open_store(db_url, migrate=False) as store:
        await store.migrate(up_to=3)
        await store.enqueue([new("old-a"), new("old-b")], now=T0)
        ids = await store.ids_for_keys(["old-a", "old-b"])
        # A version-3 receipt named its rows by id.
        await store.db.execute(
            "INSERT INTO hook_receipts (hook_id, webhook_id, delivery_ids, created_at)"
            " VALUES ('visit', 'msg_old', :ids, :now)",
            {"ids": f"[{ids[0]}, {ids[1]}]", "now": T0},
        )
    async with open_store(db_url, migrate=False) as store:
        assert await store.migrate() == [v for v in VERSIONS if v >= 4]
        redelivery = [("visit", "msg_old", hook_rows("visit", "msg_old", 1))]
        [(again, replay)] = await store.accept_hooks(redelivery, now=T0)
        assert (again, replay) == (ids, True)
        assert {d.key for d in await store.list_deliveries()} == {"old-a", "old-b"}


async def test_receipts_written_before_rows_were_keyed_by_position_still_replay(
    store: Store,
) -> None:
    # The previous release keyed rows by recipient and named them by key in a receipt.
    old = ["hook:visit/msg_v4/a@example.org/email", "hook:visit/msg_v4/b@example.org/email"]
    await store.enqueue([new(k) for k in old], now=T0)
    ids = await store.ids_for_keys(old)
    await store.db.execute(
        "INSERT INTO hook_receipts (hook_id, webhook_id, deliveries, created_at)"
        " VALUES ('visit', 'msg_v4', :keys, :now)",
        {"keys": json.dumps(old), "now": T0},
    )
    redelivery = [("visit", "msg_v4", hook_rows("visit", "msg_v4", 2))]
    assert await store.accept_hooks(redelivery, now=T0) == [(ids, True)]
    assert {d.key for d in await store.list_deliveries()} == set(old)


async def test_ping_answers_on_an_open_database(store: Store) -> None:
    await store.ping()


# --- enqueue -----------------------------------------------------------------------------------


async def test_enqueue_is_idempotent_on_key(store: Store) -> None:
    assert await store.enqueue([new("a"), new("b")], now=T0) == 2
    assert await store.enqueue([new("b"), new("c"), new("c")], now=T0 + 1) == 1
    assert {d.key for d in await store.list_deliveries()} == {"a", "b", "c"}
    (b,) = [d for d in await store.list_deliveries() if d.key == "b"]
    assert b.created_at == T0  # the first insert wins


async def test_enqueue_round_trips_every_field(store: Store) -> None:
    row = new("full", external=True, source="hook", occurrence="", state=State.SKIPPED,
              last_error="unsubscribed", message="x" * 100_000)  # fmt: skip
    await store.enqueue([row], now=T0)
    (id_,) = await store.ids_for_keys(["full"])
    got = await store.get(id_)
    assert got is not None
    assert (got.key, got.event_id, got.occurrence, got.reminder_id, got.recipient) == (
        row.key, row.event_id, "", row.reminder_id, row.recipient,
    )  # fmt: skip
    assert (got.channel, got.state, got.due_at, got.message_id, got.subject) == (
        "email", State.SKIPPED, T0, row.message_id, row.subject,
    )  # fmt: skip
    assert got.message == row.message and got.source == "hook" and got.external is True
    assert (got.attempts, got.lease_until, got.last_error) == (0, None, "unsubscribed")
    assert (got.created_at, got.updated_at, got.sent_at) == (T0, T0, None)
    assert await store.get(id_ + 1000) is None


async def test_enqueue_many_rows_in_one_call(store: Store) -> None:
    rows = [new(f"k{i}", due=T0 + i) for i in range(2500)]  # spans several chunks
    assert await store.enqueue(rows, now=T0) == 2500
    assert await store.enqueue(rows, now=T0) == 0
    assert await store.count_by_state() == {("pending", "email"): 2500}


async def test_ids_for_keys_follow_input_order(store: Store) -> None:
    await store.enqueue([new("a"), new("b"), new("c")], now=T0)
    a, b, c = await store.ids_for_keys(["a", "b", "c"])
    assert await store.ids_for_keys(["c", "a", "b", "a"]) == [c, a, b, a]
    with pytest.raises(KeyError):
        await store.ids_for_keys(["nope"])


async def test_plan_done_after_mark_plan_done_which_is_idempotent(store: Store) -> None:
    assert not await store.plan_done("p")
    await store.mark_plan_done("p", now=T0)
    await store.mark_plan_done("p", now=T0 + 1)
    assert await store.plan_done("p")
    assert not await store.plan_done("q")


# --- claim / record / release ----------------------------------------------------------------


async def test_claim_takes_due_pending_rows_oldest_first_up_to_limit(store: Store) -> None:
    await store.enqueue(
        [new("late", due=T0 + 3), new("b", due=T0 - 1), new("a", due=T0 - 2), new("c", due=T0)],
        now=T0 - 10,
    )
    claimed = await store.claim(now=T0, limit=2, lease_seconds=30)
    assert [d.key for d in claimed] == ["a", "b"]
    for d in claimed:
        assert (d.state, d.attempts, d.lease_until, d.updated_at) == (
            State.SENDING, 1, T0 + 30, T0,
        )  # fmt: skip
    assert [d.key for d in await store.claim(now=T0, limit=10, lease_seconds=30)] == ["c"]
    assert await claim_all(store, T0) == []  # "late" is not due, the others are leased


async def test_claim_skips_rows_not_pending(store: Store) -> None:
    await store.enqueue([new("skipped", state=State.SKIPPED), new("missed", state=State.MISSED)],
                        now=T0)  # fmt: skip
    assert await claim_all(store, T0 + 1000) == []


async def test_claim_takes_expired_leases(store: Store) -> None:
    await store.enqueue([new("a")], now=T0)
    (first,) = await claim_all(store, T0, lease=60)
    assert await claim_all(store, T0 + 59) == []  # the lease still runs
    assert await claim_all(store, T0 + 60) == []  # ends at lease_until, exclusive
    (again,) = await store.claim(now=T0 + 61, limit=10, lease_seconds=60)
    assert again.id == first
    assert (again.attempts, again.lease_until) == (2, T0 + 121)


async def test_two_claimers_never_get_the_same_row(db_url: str) -> None:
    async with open_store(db_url) as one, open_store(db_url) as two:
        await one.enqueue([new(f"k{i}", due=T0 - i) for i in range(300)], now=T0)

        async def drain(store: Store) -> list[int]:
            got: list[int] = []
            while batch := await claim_all(store, T0, limit=7):
                got += batch
            return got

        a, b, c, d = await asyncio.gather(drain(one), drain(two), drain(one), drain(two))
        everything = a + b + c + d
        assert len(everything) == len(set(everything)) == 300


async def test_release_hands_claims_back(store: Store) -> None:
    await store.enqueue([new("a"), new("b")], now=T0)
    claims = await store.claim(now=T0, limit=10, lease_seconds=60)
    ids = [c.id for c in claims]
    assert await store.release(claims, now=T0 + 1) == 2
    for id_ in ids:
        d = await store.get(id_)
        assert d is not None
        assert (d.state, d.attempts, d.lease_until, d.due_at) == (State.PENDING, 0, None, T0)
    assert sorted(await claim_all(store, T0 + 1)) == sorted(ids)  # claimable again at once


async def test_release_leaves_a_claim_taken_over_by_another_worker_alone(store: Store) -> None:
    await store.enqueue([new("a")], now=T0)
    (mine,) = await store.claim(now=T0, limit=10, lease_seconds=5)
    (theirs,) = await store.claim(now=T0 + 6, limit=10, lease_seconds=60)
    assert await store.release([mine], now=T0 + 7) == 0
    row = await store.get(mine.id)
    assert row is not None and (row.state, row.lease_until) == (State.SENDING, theirs.lease_until)


async def test_release_leaves_rows_not_sending_alone(store: Store) -> None:
    await store.enqueue([new("a")], now=T0)
    (claim,) = await store.claim(now=T0, limit=10, lease_seconds=60)
    id_ = claim.id
    await store.record([Outcome(id_, State.SENT, at=T0 + 1)])
    assert await store.release([claim], now=T0 + 2) == 0
    assert (await store.get(id_)).state is State.SENT  # type: ignore[union-attr]


async def test_record_sent_sets_sent_at_and_clears_the_lease(store: Store) -> None:
    await store.enqueue([new("a")], now=T0)
    (id_,) = await claim_all(store, T0)
    await store.record([Outcome(id_, State.SENT, at=T0 + 2)])
    d = await store.get(id_)
    assert d is not None
    assert (d.state, d.sent_at, d.lease_until, d.updated_at, d.attempts) == (
        State.SENT, T0 + 2, None, T0 + 2, 1,
    )  # fmt: skip
    assert await claim_all(store, T0 + 10_000) == []


async def test_record_retry_makes_the_row_due_later_and_keeps_the_error(store: Store) -> None:
    await store.enqueue([new("a")], now=T0)
    (id_,) = await claim_all(store, T0)
    await store.record([Outcome(id_, State.PENDING, at=T0 + 1, error="421 busy", retry_at=T0 + 60)])
    d = await store.get(id_)
    assert d is not None
    assert (d.state, d.due_at, d.lease_until, d.last_error) == (
        State.PENDING, T0 + 60, None, "421 busy",
    )  # fmt: skip
    assert await store.next_due_at() == T0 + 60
    assert await claim_all(store, T0 + 59) == []
    (again,) = await store.claim(now=T0 + 60, limit=1, lease_seconds=60)
    assert (again.id, again.attempts, again.last_error) == (id_, 2, "421 busy")
    await store.record([Outcome(id_, State.SENT, at=T0 + 61)])
    assert (await store.get(id_)).last_error == "421 busy"  # type: ignore[union-attr]


@pytest.mark.parametrize("final", [State.FAILED, State.DEAD, State.SKIPPED])
async def test_record_final_states_keep_the_error(store: Store, final: State) -> None:
    await store.enqueue([new("a")], now=T0)
    (id_,) = await claim_all(store, T0)
    await store.record([Outcome(id_, final, at=T0 + 1, error="550 no such user")])
    d = await store.get(id_)
    assert d is not None
    assert (d.state, d.last_error, d.lease_until, d.sent_at) == (
        final, "550 no such user", None, None,
    )  # fmt: skip


async def test_record_a_batch_of_mixed_outcomes(store: Store) -> None:
    await store.enqueue([new("a"), new("b"), new("c")], now=T0)
    a, b, c = await store.ids_for_keys(["a", "b", "c"])
    await claim_all(store, T0)
    await store.record(
        [
            Outcome(a, State.SENT, at=T0 + 1),
            Outcome(b, State.PENDING, at=T0 + 1, error="timeout", retry_at=T0 + 5),
            Outcome(c, State.DEAD, at=T0 + 1, error="gave up"),
        ]
    )
    assert await store.count_by_state() == {
        ("sent", "email"): 1,
        ("pending", "email"): 1,
        ("dead", "email"): 1,
    }


async def test_record_only_changes_rows_still_sending(store: Store) -> None:
    await store.enqueue([new("a")], now=T0)
    (id_,) = await claim_all(store, T0)
    await store.record([Outcome(id_, State.SENT, at=T0 + 1)])
    # A late duplicate outcome from a worker whose lease expired changes nothing.
    await store.record([Outcome(id_, State.FAILED, at=T0 + 2, error="late")])
    d = await store.get(id_)
    assert d is not None and (d.state, d.last_error) == (State.SENT, None)


async def test_record_refuses_outcomes_that_are_not_outcomes(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.record([Outcome(1, State.SENDING, at=T0)])


async def test_next_due_at_is_the_earliest_pending_due_or_lease_end(store: Store) -> None:
    assert await store.next_due_at() is None
    await store.enqueue([new("a", due=T0 + 100), new("b", due=T0 + 50)], now=T0)
    assert await store.next_due_at() == T0 + 50
    await claim_all(store, T0 + 50, lease=20)  # b leased until T0 + 70
    assert await store.next_due_at() == T0 + 70
    await claim_all(store, T0 + 100, lease=300)  # a and b (expired) leased until T0 + 400
    assert await store.next_due_at() == T0 + 400


async def test_a_fair_claim_takes_the_oldest_rows_of_each_channel_up_to_its_room(
    store: Store,
) -> None:
    # Robot a's backlog is due first; b, c and the email row come after it.
    await store.enqueue(
        [new(f"a{i}", due=T0 - 10 + i, channel="robot-a") for i in range(5)]
        + [new("b0", due=T0 - 1, channel="robot-b"), new("e0", due=T0 - 1)]
        + [new(f"c{i}", due=T0 + i - 3, channel="robot-c") for i in range(3)],
        now=T0 - 20,
    )

    async def fair(limit: int, **rooms: int) -> list[str]:
        got = await store.claim(
            now=T0,
            limit=limit,
            lease_seconds=60,
            kind="chat",
            per_channel=1,
            rooms={f"robot-{c}": n for c, n in rooms.items()},
        )
        return [d.key for d in got]

    # One of each chat channel but a (its room is 0), two of c's: oldest due first.
    assert await fair(10, a=0, c=2) == ["c0", "c1", "b0"]
    assert await fair(1) == ["a0"]  # the limit still holds
    assert await fair(10, a=3) == ["a1", "a2", "a3", "c2"]
    # Rows whose lease ran out count among their channel's, in due order; email's never.
    again = await store.claim(now=T0 + 61, limit=10, lease_seconds=60, kind="chat", per_channel=1)
    assert [(d.key, d.attempts) for d in again] == [("a0", 2), ("c0", 2), ("b0", 2)]
    emails = await store.claim(now=T0, limit=10, lease_seconds=60, kind="email")
    assert [d.key for d in emails] == ["e0"]


async def test_next_due_at_can_leave_channels_out(store: Store) -> None:
    await store.enqueue(
        [new("a", due=T0 + 10, channel="robot-a"), new("b", due=T0 + 50, channel="robot-b")],
        now=T0,
    )
    assert await store.next_due_at(kind="chat") == T0 + 10
    assert await store.next_due_at(kind="chat", exclude={"robot-a"}) == T0 + 50
    assert await store.next_due_at(kind="chat", exclude={"robot-a", "robot-b"}) is None


# --- reading and operating ----------------------------------------------------------------------


async def test_list_deliveries_newest_first_with_filters(store: Store) -> None:
    await store.enqueue(
        [
            new("x1", due=T0 + 1, event="x"),
            new("y1", due=T0 + 2, event="y"),
            new("x3", due=T0 + 3, event="x"),
            new("x3b", due=T0 + 3, event="x"),
        ],
        now=T0,
    )
    assert [d.key for d in await store.list_deliveries()] == ["x3b", "x3", "y1", "x1"]
    assert [d.key for d in await store.list_deliveries(event="x", limit=2)] == ["x3b", "x3"]
    await claim_all(store, T0 + 1)  # x1 -> sending
    assert [d.key for d in await store.list_deliveries(state=State.SENDING)] == ["x1"]
    assert [d.key for d in await store.list_deliveries(state=State.PENDING, event="y")] == ["y1"]
    assert await store.list_deliveries(state=State.SENT) == []


async def test_count_by_state_is_keyed_by_state_and_channel(store: Store) -> None:
    await store.enqueue([new("a"), new("b", channel="wecom"), new("c", state=State.MISSED)], now=T0)
    assert await store.count_by_state() == {
        ("pending", "email"): 1,
        ("pending", "wecom"): 1,
        ("missed", "email"): 1,
    }


async def test_requeue_makes_rows_pending_and_due_now(store: Store) -> None:
    await store.enqueue([new("a"), new("b"), new("c")], now=T0)
    a, b, c = await store.ids_for_keys(["a", "b", "c"])
    await claim_all(store, T0)
    await store.record(
        [Outcome(a, State.FAILED, at=T0, error="550"), Outcome(b, State.DEAD, at=T0, error="x")]
    )
    assert await store.requeue([State.FAILED, State.DEAD], now=T0 + 500) == 2
    for id_, error in ((a, "550"), (b, "x")):
        d = await store.get(id_)
        assert d is not None
        assert (d.state, d.due_at, d.attempts, d.last_error) == (
            State.PENDING, T0 + 500, 0, error,
        )  # fmt: skip
    assert (await store.get(c)).state is State.SENDING  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        await store.requeue([State.SENDING], now=T0)


# --- webhooks ------------------------------------------------------------------------------------


async def test_accept_hooks_replays_first_answer(store: Store) -> None:
    rows = hook_rows("visit", "msg_1", 2)
    [(ids, replay)] = await store.accept_hooks([("visit", "msg_1", rows)], now=T0)
    assert replay is False
    assert ids == await store.ids_for_keys([r.key for r in rows])
    # A redelivery, even with other content (here one recipient), gets the first answer and
    # inserts nothing.
    other = hook_rows("visit", "msg_1", 1, recipient="someone-else@example.org")
    [(again, replay)] = await store.accept_hooks([("visit", "msg_1", other)], now=T0)
    assert (again, replay) == (ids, True)
    assert await store.count_by_state() == {("pending", "email"): 2}


async def test_accept_hooks_handles_a_batch_in_one_call(store: Store) -> None:
    results = await store.accept_hooks(
        [
            ("visit", "m1", hook_rows("visit", "m1", 1)),
            ("visit", "m2", hook_rows("visit", "m2", 2)),
            ("other", "m1", []),  # same webhook-id, another hook, no rows: a receipt of its own
            ("visit", "m1", hook_rows("visit", "m1", 3)),  # redelivered within the same batch
        ],
        now=T0,
    )
    m1 = await store.ids_for_keys([hook_row_key("visit", "m1", 0)])
    m2 = await store.ids_for_keys([hook_row_key("visit", "m2", p) for p in (0, 1)])
    assert results == [(m1, False), (m2, False), ([], False), (m1, True)]
    # The webhook without rows is recognised too, even when it now brings rows.
    again = await store.accept_hooks([("other", "m1", hook_rows("other", "m1", 1))], now=T0)
    assert again == [([], True)]
    assert await store.count_by_state() == {("pending", "email"): 3}


async def test_a_redelivery_that_brings_no_rows_still_gets_the_first_answer(store: Store) -> None:
    [(ids, _)] = await store.accept_hooks([("visit", "z", hook_rows("visit", "z", 2))], now=T0)
    assert await store.accept_hooks([("visit", "z", [])], now=T0) == [(ids, True)]
    assert await store.db.fetchone("SELECT COUNT(*) FROM hook_receipts") == (0,)


async def test_a_redelivery_gets_every_row_of_a_large_first_request(store: Store) -> None:
    rows = hook_rows("visit", "big", HOOK_PROBE * 2 + 3)
    [(ids, _)] = await store.accept_hooks([("visit", "big", rows)], now=T0)
    [(again, replay)] = await store.accept_hooks([("visit", "big", rows[:1])], now=T0)
    assert (again, replay) == (ids, True) and len(ids) == len(rows)


async def test_webhook_rows_must_be_keyed_by_position(store: Store) -> None:
    with pytest.raises(ValueError, match="row 0"):
        await store.accept_hooks([("visit", "m1", [new("m1")])], now=T0)
    assert await store.count_by_state() == {}


async def test_racing_redeliveries_on_two_connections_have_one_winner(db_url: str) -> None:
    async with open_store(db_url) as one, open_store(db_url) as two:
        ids = [f"msg_{i}" for i in range(20)]
        forward = [("visit", w, hook_rows("visit", w, 2)) for w in ids]
        backward = list(reversed(forward))
        a, b = await asyncio.gather(
            one.accept_hooks(forward, now=T0), two.accept_hooks(backward, now=T0)
        )
        for (ids_a, replay_a), (ids_b, replay_b) in zip(a, reversed(b), strict=True):
            assert ids_a == ids_b and len(ids_a) == 2
            assert replay_a != replay_b  # exactly one of them inserted
        assert await one.count_by_state() == {("pending", "email"): 40}


# --- unsubscribes --------------------------------------------------------------------------------


async def test_unsubscribes_match_case_insensitively(store: Store) -> None:
    await store.unsubscribe("Alice@Example.ORG", now=T0, source="link")
    await store.unsubscribe("alice@example.org", now=T0 + 1, source="admin")  # idempotent
    asked = ["ALICE@example.org", "alice@EXAMPLE.org", "bob@example.org"]
    assert await store.unsubscribed(asked) == {"ALICE@example.org", "alice@EXAMPLE.org"}
    assert await store.unsubscribed([]) == set()


# --- the database layer ---------------------------------------------------------------------------


async def test_transaction_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.db.transaction() as tx:
            await tx.execute("INSERT INTO plans (plan_key, created_at) VALUES (:k, 1)", {"k": "p"})
            raise RuntimeError("boom")
    assert not await store.plan_done("p")


async def test_driver_errors_become_store_errors_naming_the_database(store: Store) -> None:
    with pytest.raises(StoreError, match="database") as info:
        await store.db.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value, NotifierError) and info.value.__cause__ is not None


@pytest.mark.postgres
async def test_on_postgresql_only_the_workers_writes_skip_the_disk_flush(pg_url: str) -> None:
    # Claims and sent outcomes: a crash of the server may undo them (sent again, never lost);
    # everything else (enqueue, webhook accepts, the console) waits for the flush as before.
    async with open_store(pg_url) as store:
        show = "SHOW synchronous_commit"
        relaxed = [await store.db.fetchall(show, durable=False) for _ in range(3)]
        plain = await store.db.fetchall(show)
        async with store.db.transaction() as tx:
            in_tx = await tx.fetchall(show)
        await store.enqueue([new("a"), new("b")], now=T0)
        (claimed,) = await claim_all(store, T0, limit=1)
        await store.record([Outcome(claimed, State.SENT, T0 + 1)])
        rows = {d.key: d.state for d in await store.list_deliveries()}
    assert relaxed == [[("off",)]] * 3
    assert plain == in_tx == [("on",)]
    assert sorted(rows.values()) == [State.PENDING, State.SENT]


def test_placeholders_translate_for_psycopg_but_casts_and_literals_stay() -> None:
    sql = "SELECT :a::text, '12:30 :x', x::int, \":y\", :b_2 % 2 FROM t WHERE c=:a"
    assert to_pyformat(sql) == (
        "SELECT %(a)s::text, '12:30 :x', x::int, \":y\", %(b_2)s %% 2 FROM t WHERE c=%(a)s"
    )


async def test_a_percent_sign_in_quoted_text_reaches_the_database_as_itself(store: Store) -> None:
    row = await store.db.fetchone("SELECT '50% :x', 'hook:a/b/0' LIKE '%/0', :n % 3", {"n": 7})
    assert row is not None and (row[0], bool(row[1]), row[2]) == ("50% :x", True, 1)


def test_urls_lose_their_password_in_messages() -> None:
    assert redact_url("postgresql://u:s3cret@h:5433/db") == "postgresql://u@h:5433/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_unreachable_postgresql_gives_clear_error_without_password() -> None:
    db = connect("postgresql://postgres:s3cret@127.0.0.1:1/x?connect_timeout=1")
    with pytest.raises(StoreError, match="unreachable") as info:
        await db.open()
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1/x" in str(info.value)


async def test_sqlite_creates_the_directory_of_its_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "notifier.db"
    async with open_store(f"sqlite:///{path}") as store:
        await store.ping()
    assert path.exists()


async def test_sqlite_checkpoints_the_wal_in_the_background(tmp_path: Path) -> None:
    path, wal = tmp_path / "ckpt.db", tmp_path / "ckpt.db-wal"
    async with open_store(f"sqlite:///{path}") as store:
        size_before = path.stat().st_size
        for i in range(3):  # three transactions, over SQLITE_CHECKPOINT_CHANGES rows in all
            await store.enqueue([new(f"k{i}-{j}", message="x" * 2000) for j in range(500)], now=T0)
        # The commits only appended to the WAL; the rows reach the database file while it is
        # open (SQLite's own checkpoint is off on the service's connection).
        await wait_for(lambda: path.stat().st_size > size_before + 1_000_000, 10.0)
    assert not await asyncio.to_thread(wal.exists)  # the last close copied the rest, removed it


async def test_sqlite_resets_a_wal_past_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("notifier.ledger.sqlite.SQLITE_WAL_LIMIT_BYTES", 100_000)
    path, wal = tmp_path / "limit.db", tmp_path / "limit.db-wal"
    async with open_store(f"sqlite:///{path}") as store:
        for i in range(3):
            await store.enqueue([new(f"k{i}-{j}", message="x" * 2000) for j in range(500)], now=T0)
        await wait_for(lambda: wal.stat().st_size == 0, 10.0)  # copied back and truncated
        await store.enqueue([new("after")], now=T0)  # writes go on after the reset
        assert len(await store.list_deliveries(limit=5000)) == 1501


async def test_read_only_database_file_gives_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    async with open_store(sqlite_url):
        pass
    path = tmp_path / "notifier.db"
    path.chmod(0o444)
    # root ignores file permissions: ask SQLite for a read-only open to get the same condition.
    url = sqlite_url + ("?mode=ro" if os.geteuid() == 0 else "")
    async with open_store(url, migrate=False) as store:
        assert await store.schema_version() == LATEST  # reading still works
        with pytest.raises(StoreError, match="read-only") as info:
            await store.enqueue([new("a")], now=T0)
    assert str(path) in str(info.value)


async def test_locked_database_gives_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    async with open_store(sqlite_url):
        pass
    other = sqlite3.connect(tmp_path / "notifier.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        async with open_store(sqlite_url + "?busy_timeout=50", migrate=False) as store:
            with pytest.raises(StoreError, match="locked by another connection"):
                await store.enqueue([new("a")], now=T0)
    finally:
        other.execute("ROLLBACK")
        other.close()
