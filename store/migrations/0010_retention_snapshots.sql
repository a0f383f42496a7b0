-- 0010: list snapshots, and indexes for pruning ended campaigns.
--
-- Portable between SQLite and PostgreSQL, like 0001.

-- list_snapshots: a copy of a list's entries, made in the transaction of
-- a replace import or a restore, before it replaces them, so that the
-- change can be undone. The audit record of the change names the
-- snapshot. Snapshots are pruned after store.list_snapshot_retention.
INSERT INTO seq (name, value) VALUES ('list_snapshot_id', 0);

CREATE TABLE list_snapshots (
    id         BIGINT PRIMARY KEY,
    list       TEXT NOT NULL,
    entries    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE INDEX list_snapshots_list ON list_snapshots (list, id);
CREATE INDEX list_snapshots_created_at ON list_snapshots (created_at);

CREATE TABLE list_snapshot_entries (
    snapshot_id BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    platform    TEXT NOT NULL,
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (snapshot_id, kind, platform, value)
);
-- Pruning finds the campaigns that ended before a time
-- (store.campaign_retention).
CREATE INDEX campaigns_ended ON campaigns (status, updated_at);
CREATE INDEX campaign_defs_ended ON campaign_defs (state, updated_at);
