// Command flash builds, runs, deploys and inspects flash apps.
//
// Exit codes: 0 success, 1 failure, 2 usage error.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flash-go/flash/bench"
	"github.com/flash-go/flash/internal/etcdcluster"
)

func main() {
	etcdcluster.RunIfMember() // an etcd member of `flash run --ha` (this binary re-executed)
	// A closed terminal (SIGHUP) stops everything, as Ctrl-C does.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if helper, err := bench.MaybeHelper(ctx); helper { // flash bench re-executed as its own load generator
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "flash bench helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
