-- Webhook receipts name their deliveries by key, known before the rows are inserted, so an
-- accept writes its receipt once instead of inserting it and then updating it with the ids.
-- Receipts written before this version hold ids (JSON numbers), later ones keys (strings).
ALTER TABLE hook_receipts RENAME COLUMN delivery_ids TO deliveries;

-- Receipts are kept, so that a redelivery is recognised however late it comes; nothing reads
-- them by age, and this index cost a page write per webhook batch.
DROP INDEX hook_receipts_created_at;
