-- 0006: audiences, stored recipient lists that console campaigns target.
--
-- Portable between SQLite and PostgreSQL, like 0001.
--
-- An import streams its rows in chunks of their own transactions into an
-- audience in state 'importing', then flips it to 'ready' in one last
-- transaction; a failed import marks it 'deleted'. Readers see only 'ready'
-- audiences, so an import is all or nothing without one huge transaction.
-- Members of a 'deleted' audience are removed later, in chunks.
CREATE TABLE audiences (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    recipients BIGINT NOT NULL DEFAULT 0,
    ios        BIGINT NOT NULL DEFAULT 0,
    android    BIGINT NOT NULL DEFAULT 0,
    -- zones: the distinct non-empty timezone values of the members,
    -- comma-separated and sorted, so that scheduling a
    -- recipient_time_zone campaign need not scan the members.
    zones      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE INDEX audiences_created_at ON audiences (created_at);

-- audience_members: pos numbers an audience's distinct recipients from 1
-- in the order of the file. timezone is an IANA name or '' (the
-- campaign's zone).
CREATE TABLE audience_members (
    audience_id TEXT NOT NULL,
    pos         BIGINT NOT NULL,
    platform    TEXT NOT NULL,
    token       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    PRIMARY KEY (audience_id, pos)
);

-- Duplicate (platform, token) rows of one import count once.
CREATE UNIQUE INDEX audience_members_token ON audience_members (audience_id, platform, token);
-- The scheduler streams a recipient_time_zone campaign zone by zone.
CREATE INDEX audience_members_zone ON audience_members (audience_id, timezone, pos);
