-- Chat channels: rows whose channel is a robot or an outbound webhook (any channel but
-- 'email') are claimed by their own worker. This partial index holds only those rows, so the
-- chat worker finds its few rows among a large campaign's email rows without a scan, and
-- email rows pay nothing for it. No column changes: every existing row reads as before.
CREATE INDEX deliveries_chat_state_due_at ON deliveries (state, due_at) WHERE channel <> 'email';
