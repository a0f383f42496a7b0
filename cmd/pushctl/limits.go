package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/pushd/pushd/dispatcher"
)

func limitsCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, a, tokenFile := adminFlags("limits", `usage: pushctl limits [flags] [action] [level] [rate] [burst]

actions:
  list                     the global and provider limits (the default)
  set LEVEL N [BURST]      limit LEVEL (global, apns, fcm) to N per second for
                           the whole cluster (0: no limit), at run time
  reset LEVEL              go back to the configured rate of LEVEL
`, getenv, stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		rest = []string{"list"}
	}
	if err := a.init(*tokenFile); err != nil {
		return err
	}
	var out struct {
		Limits []dispatcher.LimitInfo `json:"limits"`
	}
	switch {
	case rest[0] == "list" && len(rest) == 1:
		if err := a.do(ctx, "GET", "/api/limits", "", nil, &out); err != nil {
			return err
		}
	case rest[0] == "set" && (len(rest) == 3 || len(rest) == 4):
		r, err := strconv.ParseFloat(rest[2], 64)
		if err != nil || r < 0 {
			return fmt.Errorf("limits set: %q is not a rate (a number, 0 or more)", rest[2])
		}
		burst := 0
		if len(rest) == 4 {
			if burst, err = strconv.Atoi(rest[3]); err != nil || burst < 0 {
				return fmt.Errorf("limits set: %q is not a burst (a whole number, 0 or more)", rest[3])
			}
		}
		body, _ := json.Marshal(map[string]any{"per_second": r, "burst": burst})
		if err := a.do(ctx, "PUT", "/api/limits/"+rest[1], "application/json", bytes.NewReader(body), &out); err != nil {
			return err
		}
	case rest[0] == "reset" && len(rest) == 2:
		if err := a.do(ctx, "DELETE", "/api/limits/"+rest[1], "", nil, &out); err != nil {
			return err
		}
	default:
		fs.Usage()
		return errors.New("limits: unknown action or wrong arguments")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEVEL\tRATE/S\tBURST\tSOURCE\tCONFIGURED/S\tTHIS INSTANCE/S")
	show := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	for _, li := range out.Limits {
		src := "config"
		if li.Operator != nil {
			src = "operator"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", li.Level, show(li.PerSecond), li.Burst, src, show(li.Configured.PerSecond), show(li.InstanceShare))
	}
	return tw.Flush()
}
