package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushd/pushd/configs"
	"github.com/pushd/pushd/dispatcher"
)

// adminClient calls pushd's admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// register adds the admin API flags; defaults come from PUSHD_ADMIN_ADDR
// and PUSHD_ADMIN_TOKEN (or a file named by PUSHD_ADMIN_TOKEN_FILE).
func (a *adminClient) register(fs *flag.FlagSet, getenv func(string) string) (tokenFile *string) {
	addr := getenv(configs.EnvName("admin.addr"))
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	fs.StringVar(&a.base, "admin", "http://"+addr, "admin API base URL (env "+configs.EnvName("admin.addr")+" gives host:port)")
	fs.StringVar(&a.token, "token", getenv("PUSHD_ADMIN_TOKEN"), "bearer token (env PUSHD_ADMIN_TOKEN); prefer -token-file")
	return fs.String("token-file", getenv("PUSHD_ADMIN_TOKEN_FILE"), "file holding the bearer token (env PUSHD_ADMIN_TOKEN_FILE)")
}

// adminFlags returns the flag set of an admin API command: its usage text
// (followed by the flags), the admin client to set up with init once the
// flags are parsed, and the -token-file flag.
func adminFlags(name, usage string, getenv func(string) string, stdout io.Writer) (fs *flag.FlagSet, a *adminClient, tokenFile *string) {
	fs = flag.NewFlagSet("pushctl "+name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(stdout, usage+"\nflags:\n")
		fs.PrintDefaults()
	}
	a = &adminClient{}
	tokenFile = a.register(fs, getenv)
	return fs, a, tokenFile
}

func (a *adminClient) init(tokenFile string) error {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		a.token = strings.TrimSpace(string(b))
	}
	if a.token == "" {
		return errors.New("no admin token: give -token-file (or PUSHD_ADMIN_TOKEN_FILE / PUSHD_ADMIN_TOKEN)")
	}
	a.base = strings.TrimRight(a.base, "/")
	a.http = &http.Client{Timeout: 30 * time.Second}
	return nil
}

// do sends a request with an optional body (JSON unless contentType says
// otherwise) and decodes a JSON answer into out (or copies it to out when
// out is an io.Writer).
func (a *adminClient) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case io.Writer:
		_, err := io.Copy(o, resp.Body)
		return err
	default:
		return json.NewDecoder(resp.Body).Decode(out)
	}
}

func campaigns(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, a, tokenFile := adminFlags("campaigns", `usage: pushctl campaigns [flags] <action> [id] [rate]

actions:
  list                 every campaign, newest first
  show ID              one campaign as JSON
  pause ID             stop sending; batches wait in the campaign's queue
  resume ID            continue a paused campaign
  cancel ID            stop for good; the rest is counted as cancelled
  rate ID N            set the campaign's rate to N per second (0: no limit)
  rate ID default      go back to the rate given in the campaign's messages

console campaigns (created in pushd):
  create -file F.json  create a draft from a JSON file (see docs/campaigns.md)
  edit ID -file F.json change a draft or scheduled campaign (absent fields stay)
  preview ID           the rendered APNs and FCM payloads and their sizes
  test ID              send the draft now to the whitelisted devices
  schedule ID          schedule it (or ask for approval, if that is on)
  approve ID           approve a campaign someone else scheduled
`, getenv, stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("campaigns: no action")
	}
	if err := a.init(*tokenFile); err != nil {
		return err
	}
	need := func(n int) error {
		if len(rest) != n {
			return fmt.Errorf("campaigns %s: want %d argument(s), got %d", rest[0], n-1, len(rest)-1)
		}
		return nil
	}
	path := func(id string) string { return "/api/campaigns/" + url.PathEscape(id) }
	var info json.RawMessage
	switch rest[0] {
	case "list":
		if err := need(1); err != nil {
			return err
		}
		return listCampaigns(ctx, a, stdout)
	case "show":
		if err := need(2); err != nil {
			return err
		}
		if err := a.do(ctx, "GET", path(rest[1]), "", nil, &info); err != nil {
			return err
		}
	case "create", "edit":
		method, p, flagArgs := "POST", "/api/campaigns", rest[1:]
		if rest[0] == "edit" {
			if len(rest) < 2 {
				return errors.New("campaigns edit: want an ID")
			}
			method, p, flagArgs = "PUT", path(rest[1]), rest[2:]
		}
		body, err := campaignFile(rest[0], flagArgs, stdout)
		if err != nil {
			return err
		}
		if err := a.do(ctx, method, p, "application/json", bytes.NewReader(body), &info); err != nil {
			return err
		}
	case "pause", "resume", "cancel", "preview", "test", "schedule", "approve":
		if err := need(2); err != nil {
			return err
		}
		if err := a.do(ctx, "POST", path(rest[1])+"/"+rest[0], "", nil, &info); err != nil {
			return err
		}
	case "rate":
		if err := need(3); err != nil {
			return err
		}
		var body []byte
		if rest[2] == "default" {
			body = []byte(`{"rate_per_second": null}`)
		} else {
			r, err := strconv.ParseFloat(rest[2], 64)
			if err != nil || r < 0 {
				return fmt.Errorf("campaigns rate: %q is not a rate (a number, 0 or more, or default)", rest[2])
			}
			body, _ = json.Marshal(map[string]float64{"rate_per_second": r})
		}
		if err := a.do(ctx, "PUT", path(rest[1])+"/rate", "application/json", bytes.NewReader(body), &info); err != nil {
			return err
		}
	default:
		return fmt.Errorf("campaigns: unknown action %q", rest[0])
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, info, "", "  "); err != nil {
		return fmt.Errorf("campaigns %s: answer: %w", rest[0], err)
	}
	buf.WriteByte('\n')
	_, err := stdout.Write(buf.Bytes())
	return err
}

// campaignFile reads the -file of campaigns create or edit.
func campaignFile(action string, args []string, stdout io.Writer) ([]byte, error) {
	fs := flag.NewFlagSet("pushctl campaigns "+action, flag.ContinueOnError)
	fs.SetOutput(stdout)
	file := fs.String("file", "", "the campaign as JSON: id, name, notification, audience, rate_per_second, send_at, time_zone, recipient_time_zone")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *file == "" || fs.NArg() > 0 {
		return nil, fmt.Errorf("campaigns %s: want -file FILE.json", action)
	}
	b, err := os.ReadFile(*file)
	if err != nil {
		return nil, fmt.Errorf("campaigns %s: %w", action, err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("campaigns %s: %s is not valid JSON", action, *file)
	}
	return b, nil
}

// campaignsPageSize is how many campaigns "campaigns list" asks for at
// once, the most the admin API gives.
const campaignsPageSize = 1000

// listCampaigns prints every campaign, newest first, page by page, as a
// table (columns aligned within each page).
func listCampaigns(ctx context.Context, a *adminClient, stdout io.Writer) error {
	var page struct {
		Campaigns []struct {
			dispatcher.CampaignInfo
			Source string `json:"source"`
		} `json:"campaigns"`
		Next string `json:"next"`
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSOURCE\tSTATUS\tRATE/S\tRECEIVED\tSENT\tFAILED\tFILTERED\tDROPPED\tCANCELLED\tIN FLIGHT")
	for {
		q := url.Values{"limit": {strconv.Itoa(campaignsPageSize)}}
		if page.Next != "" {
			q.Set("after", page.Next)
		}
		page.Campaigns, page.Next = nil, ""
		if err := a.do(ctx, "GET", "/api/campaigns?"+q.Encode(), "", nil, &page); err != nil {
			return err
		}
		for _, c := range page.Campaigns {
			r := "-"
			if c.RatePerSecond > 0 {
				r = strconv.FormatFloat(c.RatePerSecond, 'f', -1, 64)
			}
			n := c.Counters
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", c.ID, c.Source, c.Status, r, n.Received, n.Sent, n.Failed, n.Filtered, n.Dropped, n.Cancelled, c.InFlight)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if page.Next == "" {
			return nil
		}
	}
}
