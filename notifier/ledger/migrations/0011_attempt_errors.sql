-- Each failed attempt of a delivery, with the server's or platform's answer, for the console's
-- delivery page (the row itself keeps only the count and the last error). Successful sends
-- write nothing here: the row's sent_at says it, and the hot path stays one UPDATE.
CREATE TABLE delivery_attempts (
    id {{ID}},
    delivery_id BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,                    -- pending (retried later) | failed | dead | skipped
    error TEXT
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, at);
