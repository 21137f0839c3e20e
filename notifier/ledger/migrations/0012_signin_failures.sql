-- The console's failed sign-in limit, shared by every instance on this database: N instances
-- behind one address no longer give N times the guesses. One row per attempt let through, kept
-- as a failure unless it signs in (then the address's rows go); rows older than the window are
-- deleted as new ones come, so the table holds about one window's failures. A table of its
-- own rather than the audit log: the audit log is history (never pruned) and is written after
-- the token is checked, while the limit counts an attempt before it (so that attempts made at
-- the same moment cannot all pass one count).
CREATE TABLE signin_failures (
    client TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);

-- The count of one address's window, newest first.
CREATE INDEX signin_failures_client_at ON signin_failures (client, at);

-- The pruning of rows past the window.
CREATE INDEX signin_failures_at ON signin_failures (at);
