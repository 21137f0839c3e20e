-- Versions of the schedule files (issue 22): every save through the console, and every change
-- made by hand that a reload noticed, with who, when, the file's whole text after it and the
-- diff. In the database, so that every instance on it shows the same history and compares a
-- file on disk with the same last version. `seq` counts each file's versions; (file, seq) is
-- unique, so that two instances noticing the same hand edit record it once.
CREATE TABLE schedule_versions (
    id {{ID}},
    file TEXT NOT NULL,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    event_id TEXT NOT NULL,
    events TEXT NOT NULL,
    role TEXT NOT NULL,
    client TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    hash TEXT NOT NULL,
    content TEXT NOT NULL,
    diff TEXT NOT NULL,
    UNIQUE (file, seq)
);
