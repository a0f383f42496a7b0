-- Operators' settings of the global and provider token buckets (levels
-- global, apns, fcm), for the whole cluster. A level without a row uses
-- the configured rate. Every instance reads this table periodically.
CREATE TABLE rate_limits (
    level      TEXT             NOT NULL PRIMARY KEY,
    per_second DOUBLE PRECISION NOT NULL,
    burst      INTEGER          NOT NULL,
    updated_at BIGINT           NOT NULL
);
