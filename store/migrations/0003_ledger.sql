-- The dedup ledger: for each batch message (keyed by a hash of its body),
-- which of its recipients are resolved (sent, failed for good, filtered,
-- or handed on durably), as a hex bitmap. A redelivered or duplicated
-- message skips them. Rows are pruned by age.
CREATE TABLE sent_ledger (
    key        TEXT   NOT NULL PRIMARY KEY,
    resolved   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sent_ledger_updated_at ON sent_ledger (updated_at);
