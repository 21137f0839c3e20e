-- The calendar feeds' SEQUENCE per event (RFC 5545/5546): a subscribed client keeps its copy of
-- an event until its SEQUENCE goes up, so a send day moved, a title edited or a provisional mark
-- dropped must raise it. One row per event UID (an occurrence's `{event}-{start}@notifier`, a
-- workday feed's block or make-up day): the digest of what the event said when last served and
-- its sequence, bumped when the digest changes. In the database, not in memory, so that it
-- survives restarts and every instance serves the same number; bumped by one conditional upsert
-- so that two instances serving the same change bump it once.
CREATE TABLE ical_sequences (
    uid TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
