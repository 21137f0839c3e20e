-- The web console: sign-in sessions, the audit log, and indexes for browsing the ledger.
-- Independent of the other branches' migrations: it only adds tables and indexes.

-- One row per signed-in browser; the cookie carries the id signed, the row holds its sha256,
-- so a copy of the database cannot be replayed as a cookie. Sign-out deletes the row.
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,                     -- admin | viewer
    csrf TEXT NOT NULL,                     -- the token every form of this session carries
    client TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);

-- Every console action and sign-in attempt, newest read first.
CREATE TABLE audit_log (
    id {{ID}},
    at DOUBLE PRECISION NOT NULL,
    role TEXT NOT NULL,                     -- admin | viewer | anonymous
    action TEXT NOT NULL,                   -- send_now | retry | resend | resubscribe | sign_in | sign_in_failed | sign_out
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    client TEXT NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);

-- Keyset pagination of the deliveries page, newest first, by each filter: (due_at, id) is the
-- page key. state has (state, due_at) since version 1; event_id's index gains due_at.
CREATE INDEX deliveries_due_at ON deliveries (due_at);

CREATE INDEX deliveries_recipient_due_at ON deliveries (recipient, due_at);

CREATE INDEX deliveries_event_id_due_at ON deliveries (event_id, due_at);

DROP INDEX deliveries_event_id;
