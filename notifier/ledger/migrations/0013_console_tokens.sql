-- Issue 17's console hardening: sessions remember which token opened them, the failed-token
-- limit counts each secret's guesses apart, and the one-time sign-in links of a first run.

-- A keyed fingerprint of the token the session signed in with: when the role's token changes
-- (or is removed), its sessions end. Rows from before have none and end at once.
ALTER TABLE console_sessions ADD COLUMN token_fp TEXT NOT NULL DEFAULT '';

-- Which secret the failures guessed: 'admin' (the console's sign-in form, the admin API's
-- bearer token, /readyz's detail) or 'calendar' (the feed's token). Calendar clients left
-- with an old token must not lock the office's address out of the console.
ALTER TABLE signin_failures ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';

DROP INDEX signin_failures_client_at;

CREATE INDEX signin_failures_scope_client_at ON signin_failures (scope, client, at);

-- One-time sign-in links, printed by `notifier run` when no admin token is set: the sha256 of
-- the link's token (the link itself is never stored), deleted when used or when it expires.
CREATE TABLE signin_links (
    token_hash TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL
);
