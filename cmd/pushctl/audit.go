package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/pushd/pushd/admin"
)

func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, a, tokenFile := adminFlags("audit", `usage: pushctl audit [flags]

The audit log, newest first: who changed what, when (admin API; operators
and admins). Filters match exactly; -since and -until are RFC 3339 times.
`, getenv, stdout)
	q := url.Values{}
	filters := []string{"actor", "action", "target", "since", "until"}
	vals := make([]*string, len(filters))
	for i, f := range filters {
		vals[i] = fs.String(f, "", "only records with this "+f)
	}
	limit := fs.Int("limit", 100, "at most this many records (1 to 1000)")
	before := fs.Int64("before", 0, "only records with an id below this one (the next page)")
	asJSON := fs.Bool("json", false, "print the records as JSON, with before and after")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("audit: unexpected argument %q", fs.Arg(0))
	}
	if err := a.init(*tokenFile); err != nil {
		return err
	}
	for i, f := range filters {
		if *vals[i] != "" {
			q.Set(f, *vals[i])
		}
	}
	q.Set("limit", strconv.Itoa(*limit))
	if *before > 0 {
		q.Set("before", strconv.FormatInt(*before, 10))
	}
	var page struct {
		Entries    []admin.AuditRecord `json:"entries"`
		NextBefore int64               `json:"next_before"`
	}
	if err := a.do(ctx, "GET", "/api/audit?"+q.Encode(), "", nil, &page); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(page)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tACTOR\tACTION\tTARGET")
	for _, e := range page.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.ID, e.At.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target)
	}
	if page.NextBefore > 0 {
		fmt.Fprintf(tw, "(more: -before %d)\n", page.NextBefore)
	}
	return tw.Flush()
}
