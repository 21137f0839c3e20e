-- Small named values the service keeps between runs, e.g. how far ahead it has
-- materialized the schedule (so a restart knows which sends were missed while it was down).
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
