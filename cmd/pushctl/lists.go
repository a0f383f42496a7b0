package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"
)

// listsPageSize is how many entries "lists entries" asks for at once, the
// most the admin API gives.
const listsPageSize = 1000

// listsCommand runs "pushctl lists".
func listsCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs, a, tokenFile := adminFlags("lists", `usage: pushctl lists [flags] <action> NAME [args] [flags]

NAME is blacklist or whitelist; flags may come before or after the
arguments ("--" ends them, for a value starting with "-").

actions:
  show NAME                     how many entries the list holds
  entries NAME [-limit N]       the entries, as a table (all of them, or the first N)
  add NAME KIND VALUE [-platform ios|android] [-reason R]
                                add an entry, or set the reason of one already there;
                                KIND is user or token (a token needs -platform)
  remove NAME KIND VALUE [-platform ios|android]
                                remove an entry
  import NAME FILE.csv [-replace]
                                add the entries of a CSV file (- for stdin), all or
                                none; with -replace the list holds exactly the file's
  export NAME [FILE.csv] [-snapshot ID]
                                write the list (or one of its snapshots) as CSV to
                                FILE, or to stdout
  snapshots NAME                the snapshots of the list, newest first: what replace
                                imports and restores replaced
  restore NAME ID               replace the list with its snapshot ID (what it held
                                is kept as a new snapshot)

CSV files have the header kind,value,platform,reason.
`, getenv, stdout)
	replace := fs.Bool("replace", false, "import: replace the list with the file's entries instead of adding them")
	platform := fs.String("platform", "", "add, remove: platform of a token entry, ios or android")
	reason := fs.String("reason", "", "add: why the entry is there (opt_out, invalid_token, abuse, test_device...)")
	limit := fs.Int("limit", 0, "entries: print at most `N` entries (0: all)")
	snapshot := fs.Int64("snapshot", 0, "export: the snapshot `ID` to export instead of the list")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("lists: no action")
	}
	action := rest[0]
	err = checkAction(fs, "lists", rest, map[string]actionSpec{
		"show":      {1, 1, nil},
		"entries":   {1, 1, []string{"limit"}},
		"add":       {3, 3, []string{"platform", "reason"}},
		"remove":    {3, 3, []string{"platform"}},
		"import":    {2, 2, []string{"replace"}},
		"export":    {1, 2, []string{"snapshot"}},
		"snapshots": {1, 1, nil},
		"restore":   {2, 2, nil},
	})
	if err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("lists entries: -limit %d: want 0 (all) or more", *limit)
	}
	if err := a.init(*tokenFile); err != nil {
		return err
	}

	name := rest[1]
	path := "/api/lists/" + url.PathEscape(name)
	switch action {
	case "show":
		var info struct {
			List    string `json:"list"`
			Entries int    `json:"entries"`
		}
		if err := a.do(ctx, "GET", path, "", nil, &info); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s: %d entries\n", info.List, info.Entries)
		return err
	case "entries":
		return listEntries(ctx, a, path, *limit, stdout)
	case "add":
		body, _ := json.Marshal(map[string]string{"kind": rest[2], "value": rest[3], "platform": *platform, "reason": *reason})
		var res struct {
			Added   int `json:"added"`
			Updated int `json:"updated"`
		}
		if err := a.do(ctx, "POST", path+"/entries", "application/json", bytes.NewReader(body), &res); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s: %d added, %d updated\n", name, res.Added, res.Updated)
		return err
	case "remove":
		body, _ := json.Marshal(map[string]any{"entries": []map[string]string{{"kind": rest[2], "value": rest[3], "platform": *platform}}})
		var res struct {
			Removed int `json:"removed"`
		}
		if err := a.do(ctx, "DELETE", path+"/entries", "application/json", bytes.NewReader(body), &res); err != nil {
			return err
		}
		note := ""
		if res.Removed == 0 {
			note = " (it was not in the list)"
		}
		_, err := fmt.Fprintf(stdout, "%s: %d removed%s\n", name, res.Removed, note)
		return err
	case "import":
		return listImport(ctx, a, path, name, rest[2], *replace, stdin, stdout)
	case "export":
		file := "-"
		if len(rest) == 3 {
			file = rest[2]
		}
		if *snapshot != 0 {
			path += "/snapshots/" + fmt.Sprint(*snapshot)
		}
		return listExport(ctx, a, path, name, file, stdout)
	case "snapshots":
		return listSnapshots(ctx, a, path, stdout)
	case "restore":
		var res struct {
			Restored int `json:"restored"`
		}
		if err := a.do(ctx, "POST", path+"/snapshots/"+url.PathEscape(rest[2])+"/restore", "", nil, &res); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s: restored snapshot %s, %d entries\n", name, rest[2], res.Restored)
		return err
	}
	return nil
}

// listSnapshots prints the snapshots of a list as a table.
func listSnapshots(ctx context.Context, a *adminClient, path string, stdout io.Writer) error {
	var out struct {
		Snapshots []struct {
			ID        int64     `json:"id"`
			Entries   int       `json:"entries"`
			CreatedAt time.Time `json:"created_at"`
			CreatedBy string    `json:"created_by"`
		} `json:"snapshots"`
	}
	if err := a.do(ctx, "GET", path+"/snapshots", "", nil, &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENTRIES\tCREATED\tBY")
	for _, sn := range out.Snapshots {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", sn.ID, sn.Entries, sn.CreatedAt.UTC().Format(time.RFC3339), sn.CreatedBy)
	}
	return tw.Flush()
}

// listEntries prints the entries of a list, page by page, as a table
// (columns aligned within each page of 1000).
func listEntries(ctx context.Context, a *adminClient, path string, limit int, stdout io.Writer) error {
	type entry struct {
		Kind      string    `json:"kind"`
		Value     string    `json:"value"`
		Platform  string    `json:"platform"`
		Reason    string    `json:"reason"`
		CreatedAt time.Time `json:"created_at"`
	}
	var page struct {
		Entries []entry `json:"entries"`
		Next    string  `json:"next"`
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tPLATFORM\tVALUE\tREASON\tCREATED")
	printed := 0
	for {
		size := listsPageSize
		if limit > 0 {
			size = min(size, limit-printed)
		}
		q := url.Values{"limit": {fmt.Sprint(size)}}
		if page.Next != "" {
			q.Set("after", page.Next)
		}
		page.Entries, page.Next = nil, ""
		if err := a.do(ctx, "GET", path+"/entries?"+q.Encode(), "", nil, &page); err != nil {
			return err
		}
		for _, e := range page.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Kind, dash(e.Platform), e.Value, dash(e.Reason), e.CreatedAt.UTC().Format(time.RFC3339))
		}
		printed += len(page.Entries)
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.Next == "" || limit > 0 && printed >= limit {
			return nil
		}
	}
}

// listImport sends a CSV file (- for stdin) as it reads it.
func listImport(ctx context.Context, a *adminClient, path, name, file string, replace bool, stdin io.Reader, stdout io.Writer) error {
	body, closeBody, err := openInput(file, stdin)
	if err != nil {
		return err
	}
	defer closeBody()
	path += "/import"
	if replace {
		path += "?replace=true"
	}
	var res struct {
		Imported int `json:"imported"`
	}
	a.http.Timeout = 0 // a big file takes as long as it takes; ^C stops it
	if err := a.do(ctx, "POST", path, "text/csv", io.NopCloser(body), &res); err != nil {
		return err
	}
	if replace {
		_, err := fmt.Fprintf(stdout, "%s: replaced with %d entries\n", name, res.Imported)
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: %d entries imported\n", name, res.Imported)
	return err
}

// listExport writes a list as CSV to stdout (file "-") or to file, which
// appears only once the whole list is written.
func listExport(ctx context.Context, a *adminClient, path, name, file string, stdout io.Writer) error {
	a.http.Timeout = 0 // a big list takes as long as it takes; ^C stops it
	path += "/export"
	if file == "-" {
		return a.do(ctx, "GET", path, "", nil, stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return err
	}
	err = a.do(ctx, "GET", path, "", nil, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), file)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: exported to %s\n", name, file)
	return err
}

// actionSpec is what an action of a command takes: min to max arguments
// after the action, and the flags of the command that apply to it (the
// admin API's always do).
type actionSpec struct {
	min, max int
	flags    []string
}

// checkAction checks the action rest[0] of command, the number of its
// arguments, and that only flags that apply to it were set in fs.
func checkAction(fs *flag.FlagSet, command string, rest []string, specs map[string]actionSpec) error {
	action := rest[0]
	spec, ok := specs[action]
	if !ok {
		return fmt.Errorf("%s: unknown action %q", command, action)
	}
	if n := len(rest) - 1; n < spec.min || n > spec.max {
		want := fmt.Sprint(spec.min)
		if spec.max > spec.min {
			want += " or " + fmt.Sprint(spec.max)
		}
		return fmt.Errorf("%s %s: want %s argument(s), got %d (pushctl %s -h)", command, action, want, n, command)
	}
	var badFlag error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "admin", "token", "token-file":
		default:
			if !slices.Contains(spec.flags, f.Name) && badFlag == nil {
				badFlag = fmt.Errorf("%s %s: -%s does not apply", command, action, f.Name)
			}
		}
	})
	return badFlag
}

// openInput opens file for reading, or returns stdin for "-" (which close
// leaves open).
func openInput(file string, stdin io.Reader) (r io.Reader, close func(), err error) {
	if file == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, which it returns. Everything after "--" is
// positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
