-- 0007: campaigns created in pushd (the console and its API), and what
-- the scheduler needs to fire each exactly once.
--
-- Portable between SQLite and PostgreSQL, like 0001. Booleans are BIGINT
-- 0 or 1.
--
-- A definition's state is draft, awaiting_approval, scheduled, running,
-- finished, cancelled or missed. Once running, the campaign also has a row
-- in campaigns (the engine's control state and counters, created by the
-- scheduler before it publishes); paused, finished and cancelled then come
-- from there.
CREATE TABLE campaign_defs (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    state               TEXT NOT NULL,
    -- notification is the pushd.batch/v1 notification object, as JSON.
    notification        TEXT NOT NULL,
    audience_id         TEXT NOT NULL,
    rate_per_second     DOUBLE PRECISION NOT NULL,
    -- send_at as the operator gave it: a wall time in time_zone
    -- ("2026-12-24T09:00"), RFC 3339 with an offset, or '' (as soon as
    -- scheduled).
    send_at             TEXT NOT NULL,
    time_zone           TEXT NOT NULL,
    recipient_time_zone BIGINT NOT NULL,
    -- fire_at: when the scheduler starts publishing (unix ms), set by
    -- schedule: the earliest of the campaign's send times.
    fire_at             BIGINT NULL,
    -- tests counts test sends; the next one is <id>.test-<tests+1>.
    tests               BIGINT NOT NULL DEFAULT 0,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    scheduled_by        TEXT NOT NULL DEFAULT '',
    approved_by         TEXT NOT NULL DEFAULT '',
    -- The scheduler's lease: the instance publishing the campaign, until
    -- when. Another instance may take a running campaign over only after
    -- lease_until.
    lease_owner         TEXT NOT NULL DEFAULT '',
    lease_until         BIGINT NOT NULL DEFAULT 0,
    -- Publishing progress: the (timezone, pos) of the last recipient
    -- whose batch the broker confirmed, recipients published, and 1 once
    -- the whole audience is out.
    cursor_zone         TEXT NOT NULL DEFAULT '',
    cursor_pos          BIGINT NOT NULL DEFAULT 0,
    published           BIGINT NOT NULL DEFAULT 0,
    published_all       BIGINT NOT NULL DEFAULT 0,
    -- version increases with every change, for edits that must not
    -- overwrite each other.
    version             BIGINT NOT NULL
);

CREATE INDEX campaign_defs_due ON campaign_defs (state, fire_at);
CREATE INDEX campaign_defs_audience ON campaign_defs (audience_id);

-- The audit log is read newest first, filtered by actor, action or target.
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_action ON audit (action, id);
CREATE INDEX audit_target ON audit (target, id);
