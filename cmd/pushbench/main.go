// Command pushbench measures pushd's throughput against a bare apns2 client,
// both pushing to the same simulator in the same run (DESIGN.md,
// "Performance"). It is a measurement, not a test: it reports both rates,
// their ratio and the CPU each spends per 100,000 notifications, and says
// whether pushd reached 0.8 of the bare client's rate. With -blacklist N it
// also measures pushd with an N-entry blacklist loaded against plain pushd,
// and says whether it kept 0.95 of pushd's rate.
//
// Usage:
//
//	scripts/build.sh
//	pushbench [-n 100000] [-rounds 3] [-concurrency 256] [-latency 0] [-timeout 5m]
//	          [-pushd ./bin/pushd] [-pushsim ./bin/pushsim]
//	          [-amqp-url amqp://guest:guest@127.0.0.1:5672/] [-blacklist 0]
//	          [-only bare|pushd|pushd+blacklist] [-json]
//
// pushbench starts one pushsim on a free loopback port and, in each round,
// lets every contender push n notifications to it (iOS; with -android P,
// P% of them Android through FCM), in an order rotated
// from one round to the next:
//
//   - bare: a plain apns2 client (apns2.NewClient, trusting the simulator's
//     CA, nothing else tuned) pushing the payload pushd renders, from
//     -concurrency goroutines, in a child process (pushbench itself, run
//     with PUSHBENCH_ROLE=bare); with -android, a plain firebase messaging
//     client (128 goroutines, the message pushd renders) beside it in the
//     same process, the two running together;
//   - pushd: the pushd binary draining n recipients published beforehand
//     to a topology of its own on RabbitMQ (deleted at the end of the round);
//   - pushd+blacklist, with -blacklist N > 0: the same, but pushd's store
//     holds a blacklist of N random entries (half user ids, half tokens,
//     none a recipient's), imported once before the first round with
//     store.ImportList and copied into each round's store. pushd loads it
//     at start and checks every recipient against it. The import time is
//     reported, and for both pushd contenders the time from the start of
//     the process to the first 200 from /readyz.
//
// All are timed the same way, from the simulator's counts: t0 is the first
// poll of GET /sim/stats that sees a push accepted, t1 the first that sees
// all n. The rate is what was accepted between the two polls divided by
// t1-t0; the CPU is the contender's user+system time between the same two
// polls. See docs/benchmarks.md.
//
// The -amqp-url default comes from $PUSHD_AMQP_URL when set. Other PUSHD_*
// variables in the environment reach pushd unchanged (and are printed), except
// those pushbench sets itself.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		stop()
		os.Exit(1)
	}
}
