-- The hand-offs of a finished batch: which of its recipients went back to
-- the campaign's queue (rest) and to their next attempt (retry), as hex
-- bitmaps, written before they are published. A batch delivered again
-- after a crash publishes the same hand-offs again (the ledger then drops
-- the copies) instead of sending those recipients itself.
ALTER TABLE sent_ledger ADD COLUMN rest TEXT NOT NULL DEFAULT '';
ALTER TABLE sent_ledger ADD COLUMN retry TEXT NOT NULL DEFAULT '';
