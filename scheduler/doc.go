// Package scheduler fires the campaigns operators create in pushd's admin
// module at their time, and publishes their audiences to RabbitMQ as
// pushd.batch/v1 batches: a producer like any outside one. The delivery
// engine (package dispatcher) never learns about schedules; it receives the
// batches on the normal lane as it would from an admin service.
//
// It is not for sending: it publishes and stores how far it got. Nor does
// it decide what is due: the Store does, in one transaction (Claim).
//
// # What it does
//
// Run sleeps until the earlier of the next scheduled fire_at and the poll
// interval (1s; Wake cuts a sleep short after a campaign is scheduled),
// then claims the due campaigns: the Store moves each to running under a
// lease held by this instance, or marks it missed when its time passed
// more than max_late ago (it is then not sent). Each claimed campaign is
// published by a goroutine of its own, at most Concurrency at once: the
// audience is streamed from the Store from the campaign's cursor in
// chunks of at most BatchSize recipients; each chunk becomes a batch
// (more than one only if it does not fit the 1 MiB message limit),
// published with confirms; once the broker confirmed the chunk, the
// cursor (the chunk's last recipient) and the published count are stored,
// which also renews the lease. The last step marks the campaign
// published_all and drops the lease.
//
// With recipient_time_zone the Store streams the audience by (zone, pos),
// so that a chunk holds one zone's recipients, and each batch carries
// not_before: send_at's wall time in that zone (the campaign's zone for
// recipients with none). The dispatcher holds such batches durably until
// then, and sends at once those whose time has passed.
//
// SendTest publishes a test send at once on the high lane, as a campaign
// of its own with campaign.test set, so that only whitelisted recipients
// get it and the real campaign's counters stay clean.
//
// # Exactly once
//
// A campaign's recipients are published once, across restarts and
// instances, by four things together:
//
//   - The lease. Claim hands a campaign to one instance at a time, in one
//     store transaction; another instance takes it over only once the
//     lease has expired (LeaseFor, 30s, without a renewal). Every stored
//     chunk renews it, and so does every retry of a failed publish, whose
//     attempts are bounded by a third of the lease.
//   - The cursor, stored only after the broker's confirm, and only ever at
//     the end of a chunk. A resumed campaign streams the same chunks from
//     just after it (every instance must use the same BatchSize).
//   - Deterministic batches: the id is "<campaign id>/<first pos, 10
//     digits>", from the campaign and the position only, and the body
//     depends on nothing else either (not_before is set even once its
//     time has passed), so a batch built again is the same bytes. A batch
//     is never skipped: a failed publish is retried, with backoff, until
//     it is confirmed.
//   - The window. An instance that dies (kill -9, power) after the broker
//     confirmed a batch and before the cursor was stored leaves the cursor
//     one chunk behind: the instance that resumes publishes that chunk's
//     batch again (its batches, if it was split), with the same id and
//     the same bytes. That one chunk per crash is the only duplicate the
//     scheduler can make; the dispatcher's dedup ledger, which knows a
//     producer's message by a hash of its body and records which of its
//     recipients were sent, is the second net that keeps them from getting
//     the push twice. A publish cut off by a lost connection is the same
//     case: it is published again, the same bytes under the same id.
//
// A graceful stop (Run's context ends) cancels the publishes in flight
// and hands each lease back at the cursor reached, so that the next
// instance resumes at once rather than after the lease.
//
// # Cancel
//
// Cancelling a campaign (admin API) is a store change: a cancelled
// campaign is no longer running, so the next Progress of the instance
// publishing it returns ErrLeaseLost and publishing stops there, within
// one chunk; so does a lease another instance took over. Stopping the
// sends of batches already published is the dispatcher's part: it drops a
// cancelled campaign's recipients within a second.
package scheduler
