-- Attachment contents, each once, by the SHA-256 of its bytes: a 2 MB file sent to 5,000
-- enterprises is 2 MB here, not 10 GB of rows. A row's stored message names the digest in
-- place of the part's body, and the worker splices the content in at send time
-- (ledger/attachments.py): a retry sends the same bytes, and a file edited after the rows
-- were made (a new digest) changes nothing for them.
CREATE TABLE attachments (
    digest TEXT PRIMARY KEY,        -- sha256, hex
    size INTEGER NOT NULL,
    content {{BLOB}} NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
