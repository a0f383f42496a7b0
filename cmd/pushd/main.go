// Command pushd is the push-notification dispatcher daemon: it consumes
// batches from RabbitMQ and sends them through APNs and FCM (or the built-in
// simulator when no credentials are configured).
//
// Usage:
//
//	pushd [-config pushd.yaml]
//
// Every configuration key can also be set as PUSHD_<SECTION>_<KEY>; see
// configs/pushd.example.yaml.
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
		fmt.Fprintln(os.Stderr, "pushd:", err)
		os.Exit(1)
	}
}
