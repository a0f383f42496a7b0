// Command pushctl is the command-line tool for producers and operators of
// pushd.
//
//	pushctl enqueue -file batch.json          publish batches from a file
//	pushctl enqueue -campaign demo -n 10000   publish a synthetic campaign
//	pushctl campaigns list                    campaigns, through the admin API
//	pushctl campaigns pause|resume|cancel ID
//	pushctl campaigns rate ID 500
//	pushctl campaigns create -file campaign.json   a console campaign (draft)
//	pushctl campaigns preview|test|schedule|approve ID
//	pushctl audit -action campaign.cancel     the audit log
//	pushctl lists show|entries blacklist      the lists, through the admin API
//	pushctl lists import blacklist FILE.csv [-replace]
//	pushctl lists export blacklist [FILE.csv]
//	pushctl lists add|remove blacklist token VALUE -platform ios
//	pushctl audiences import -name NAME FILE.csv   stored recipient lists
//	pushctl audiences list|show ID|export ID [FILE.csv]|delete ID
//	pushctl users list|add NAME ROLE|passwd NAME|role NAME ROLE|disable NAME|enable NAME
//	                                            console users; passwords from stdin
//
// Connection settings come from flags or the same environment variables as
// pushd (PUSHD_AMQP_URL, PUSHD_AMQP_EXCHANGE, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "pushctl:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: pushctl <command> [flags]

commands:
  enqueue     publish batches (from a file, or a synthetic campaign) with publisher confirms
  campaigns   list, show, create, preview, test, schedule, approve, pause, resume, cancel campaigns and change their rate (admin API)
  lists       show, add to, remove from, import (CSV) and export the blacklist and whitelist (admin API)
  audiences   import (CSV), list, show, export and delete stored audiences (admin API)
  limits      show and change the global and provider rate limits at run time (admin API)
  audit       the audit log, newest first, with filters (admin API)
  users       list, add and disable the console's users, set their password (from stdin) or role (admin API)

Run "pushctl <command> -h" for the flags of a command.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "enqueue":
		return enqueue(ctx, args[1:], getenv, stdin, stdout)
	case "campaigns":
		return campaigns(ctx, args[1:], getenv, stdout)
	case "lists":
		return listsCommand(ctx, args[1:], getenv, stdin, stdout)
	case "audiences":
		return audiencesCommand(ctx, args[1:], getenv, stdin, stdout)
	case "limits":
		return limitsCommand(ctx, args[1:], getenv, stdout)
	case "audit":
		return auditCommand(ctx, args[1:], getenv, stdout)
	case "users":
		return usersCommand(ctx, args[1:], getenv, stdin, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
