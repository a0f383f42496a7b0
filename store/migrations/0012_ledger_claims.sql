-- A claim on a batch message's ledger row: the instance sending the
-- message (owner) and until when its claim holds (claimed_until, Unix
-- milliseconds). Two copies of one message consumed by two instances at
-- once (a broker redelivering after a connection loss while the first
-- instance still sends) would otherwise both send its recipients: the
-- in-process guard does not span instances. The owner renews its claim
-- while it sends and clears it with the run's last ledger write; a copy
-- that finds another live claim waits. A dead owner's claim expires.
ALTER TABLE sent_ledger ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE sent_ledger ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
