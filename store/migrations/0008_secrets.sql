-- 0008: secrets every instance must share, made by the first instance
-- that needs one (for now the key that seals pushd's own AMQP headers).
-- value is hex.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
