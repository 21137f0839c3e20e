-- The ledger: one row per (event occurrence, reminder, recipient, channel) = one send.
-- Written once for both dialects: Store.migrate() substitutes the double-brace markers.

CREATE TABLE deliveries (
    id {{ID}},
    key TEXT NOT NULL UNIQUE,               -- idempotency key: enqueueing twice is a no-op
    event_id TEXT NOT NULL,
    occurrence TEXT NOT NULL,
    reminder_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,       -- POSIX seconds, UTC
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    source TEXT NOT NULL,
    external {{BOOL}} NOT NULL DEFAULT FALSE,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until DOUBLE PRECISION,           -- set while state = 'sending'
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION
);

-- Serves claim(): pending rows by due_at, sending rows by state (then lease_until filtered).
CREATE INDEX deliveries_state_due_at ON deliveries (state, due_at);

CREATE INDEX deliveries_event_id ON deliveries (event_id);

-- A plan (an event's occurrences up to a horizon) that was fully enqueued.
CREATE TABLE plans (
    plan_key TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL
);
