-- 0002: the blacklist and the whitelist, and the log of their changes.
--
-- Portable between SQLite and PostgreSQL, like 0001.

-- list_rev numbers list_changes rows. Every list write bumps it inside its
-- transaction, one value per change row, so revs have no gaps.
INSERT INTO seq (name, value) VALUES ('list_rev', 0);

-- list_entries: the entries of both lists. platform is 'ios' or 'android'
-- for a token entry, '' for a user entry.
CREATE TABLE list_entries (
    list       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    platform   TEXT NOT NULL,
    value      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (list, kind, platform, value)
);

-- list_changes: what every instance replays to keep its copy of the lists
-- current. op is 'add' or 'remove' (with the entry) or 'reload' (list only,
-- the other columns ''): rebuild that list from list_entries.
CREATE TABLE list_changes (
    rev      BIGINT PRIMARY KEY,
    op       TEXT NOT NULL,
    list     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    platform TEXT NOT NULL,
    value    TEXT NOT NULL,
    reason   TEXT NOT NULL,
    at       BIGINT NOT NULL
);

CREATE INDEX list_changes_at ON list_changes (at);
