-- 0009: accounts of the admin console and their sessions (DESIGN.md,
-- "Operator side": accounts).
--
-- Portable between SQLite and PostgreSQL, like 0001. Booleans are BIGINT
-- 0 or 1; times are unix milliseconds.

-- users: one row per account. password_hash is a bcrypt hash (text,
-- "$2a$..."); the password itself is never stored.
CREATE TABLE users (
    name                TEXT PRIMARY KEY,
    role                TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash       TEXT NOT NULL,
    disabled            BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);

-- sessions: one row per signed-in browser. id_hash is the hex SHA-256 of
-- the session cookie's value, so that the store never holds a value that
-- would sign anyone in. A session lives until it is idle or old for
-- longer than admin.session_idle or admin.session_max (checked on each
-- request, and pruned by housekeeping), until its user signs out, is
-- disabled or has the password changed.
CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    address    TEXT NOT NULL DEFAULT ''
);

CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_last_seen ON sessions (last_seen);
CREATE INDEX sessions_created_at ON sessions (created_at);
