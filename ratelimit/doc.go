// Package ratelimit provides the token buckets that pace pushd's sends and
// the clocks they run on.
//
// A Bucket allows a steady rate of tokens per second with a burst, built on
// golang.org/x/time/rate. Bucket.Wait takes one token, blocking until it is
// due; the dispatcher calls it once per recipient at each level it throttles
// (campaign, then provider, then global), so it is cheap: an unlimited bucket
// answers with one atomic load, and a bucket with a token to spare neither
// waits nor allocates. Bucket.Set changes the rate and burst of a bucket in
// use, and goroutines already waiting follow the new limit at once, in the
// order they arrived.
//
// Every Bucket reads time from a Clock it is given: SystemClock in
// production, a ManualClock in tests and simulations, which moves only when
// told and lets a test see when goroutines are blocked (ManualClock.Waiters).
//
// The package is not for:
//   - limits across instances: a Bucket paces one process. A cluster-wide
//     rate is divided among instances by the caller.
//   - scheduling or priorities: waiters are served first come, first served;
//     keeping a slow campaign from holding up others is done by giving each
//     campaign its own bucket and its own goroutines.
//   - dropping work: there is no Allow. Callers that must not wait pass a
//     context with a deadline or that they cancel.
//
// It imports nothing from pushd.
package ratelimit
