-- 0001: campaigns, their revision sequence, and the audit log.
--
-- Portable between SQLite and PostgreSQL: standard types only, times are
-- BIGINT unix milliseconds, ids come from the seq table (no AUTOINCREMENT,
-- no SERIAL).

-- seq holds named counters, bumped with
--   UPDATE seq SET value = value + 1 WHERE name = $1 RETURNING value
-- inside the transaction that uses the value. In PostgreSQL the row lock
-- is held until commit, so values commit in the order they are handed out:
-- a poller that has seen rev N never misses a later commit of a rev below N.
CREATE TABLE seq (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO seq (name, value) VALUES ('campaign_rev', 0);
INSERT INTO seq (name, value) VALUES ('audit_id', 0);

-- campaigns: control state (status, rates; each change takes a new rev)
-- and counters summed over every instance (no new rev).
CREATE TABLE campaigns (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    message_rate  DOUBLE PRECISION NOT NULL DEFAULT 0,
    rate_override DOUBLE PRECISION NULL,
    received      BIGINT NOT NULL DEFAULT 0,
    sent          BIGINT NOT NULL DEFAULT 0,
    failed        BIGINT NOT NULL DEFAULT 0,
    filtered      BIGINT NOT NULL DEFAULT 0,
    dropped       BIGINT NOT NULL DEFAULT 0,
    cancelled     BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    rev           BIGINT NOT NULL
);

CREATE INDEX campaigns_rev ON campaigns (rev);
CREATE INDEX campaigns_created_at ON campaigns (created_at);

-- audit: who changed what, when, with the state before and after as JSON.
CREATE TABLE audit (
    id     BIGINT PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT NULL,
    after  TEXT NULL
);
