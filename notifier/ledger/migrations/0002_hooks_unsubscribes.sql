-- Webhook deduplication and the unsubscribe list.

-- The first answer to a webhook-id, replayed when the sender redelivers.
CREATE TABLE hook_receipts (
    hook_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    delivery_ids TEXT NOT NULL,             -- JSON list of deliveries.id
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (hook_id, webhook_id)
);

-- For prune_hook_receipts().
CREATE INDEX hook_receipts_created_at ON hook_receipts (created_at);

-- Lower-cased addresses that asked not to receive external (outreach) sends.
CREATE TABLE unsubscribes (
    email TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL
);
