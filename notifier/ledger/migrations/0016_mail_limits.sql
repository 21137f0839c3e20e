-- A mail account's real limits (issue 21): quotas shared by every instance, pauses after a
-- throttle reply, the rows waiting for either, and the addresses that bounced.

-- One counter per (account, window): `used` sends in the window starting at `window_start`
-- (POSIX seconds; a day window starts at local midnight). Taken by one conditional upsert
-- per window, all of a send's windows in one transaction, so instances sharing the database
-- never send more than the account allows, together.
CREATE TABLE send_quotas (
    channel TEXT NOT NULL,
    window_seconds INTEGER NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (channel, window_seconds, window_start)
);

-- An account paused after a throttle reply ("too frequently sending", 421...): no send
-- through it before `until`. `level` counts the pauses in a row: the next one is twice as long.
CREATE TABLE channel_pauses (
    channel TEXT PRIMARY KEY,
    until DOUBLE PRECISION NOT NULL,
    level INTEGER NOT NULL,
    reason TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

-- Rows put back unsent (no attempt spent) to wait for a quota window or a pause: shown as
-- waiting while the row is still pending and due at `until`.
CREATE TABLE quota_waits (
    delivery_id BIGINT PRIMARY KEY,
    until DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL
);

-- Addresses that do not exist (a permanent 5xx for the recipient, or a hard bounce read back):
-- outreach skips them. `address` lower-cased; `delivery_id` the row that learned it.
CREATE TABLE suppressions (
    address TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    source TEXT NOT NULL,
    delivery_id BIGINT,
    first_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL
);

-- A bounce read back names our Message-ID: find its row without a scan of the ledger.
CREATE INDEX deliveries_message_id ON deliveries (message_id);
