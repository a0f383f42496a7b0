package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// audience is an audience as the admin API shows it.
type audience struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Recipients int64     `json:"recipients"`
	IOS        int64     `json:"ios"`
	Android    int64     `json:"android"`
	Zones      []string  `json:"zones"`
	CreatedAt  time.Time `json:"created_at"`
	CreatedBy  string    `json:"created_by"`
}

// audiencesCommand runs "pushctl audiences".
func audiencesCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs, a, tokenFile := adminFlags("audiences", `usage: pushctl audiences [flags] <action> [args] [flags]

Audiences are stored recipient lists that console campaigns target. Flags
may come before or after the arguments ("--" ends them).

actions:
  import -name NAME FILE.csv    store the recipients of a CSV file (- for stdin) as a
                                new audience, all or nothing; prints its id
  list                          the audiences, newest first
  show ID                       one audience
  export ID [FILE.csv]          write the audience as CSV to FILE, or to stdout
  delete ID                     delete an audience no live campaign uses

CSV files have the header platform,token,user_id and optionally timezone
(an IANA name such as Asia/Seoul).
`, getenv, stdout)
	name := fs.String("name", "", "import: the audience's `name`")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("audiences: no action")
	}
	err = checkAction(fs, "audiences", rest, map[string]actionSpec{
		"import": {1, 1, []string{"name"}},
		"list":   {0, 0, nil},
		"show":   {1, 1, nil},
		"export": {1, 2, nil},
		"delete": {1, 1, nil},
	})
	if err != nil {
		return err
	}
	if rest[0] == "import" && *name == "" {
		return errors.New("audiences import: -name is required")
	}
	if err := a.init(*tokenFile); err != nil {
		return err
	}

	switch rest[0] {
	case "import":
		return audienceImport(ctx, a, *name, rest[1], stdin, stdout)
	case "list":
		var res struct {
			Audiences []audience `json:"audiences"`
		}
		if err := a.do(ctx, "GET", "/api/audiences", "", nil, &res); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tRECIPIENTS\tIOS\tANDROID\tCREATED\tBY")
		for _, au := range res.Audiences {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", au.ID, au.Name, au.Recipients, au.IOS, au.Android,
				au.CreatedAt.UTC().Format(time.RFC3339), au.CreatedBy)
		}
		return tw.Flush()
	case "show":
		var au audience
		if err := a.do(ctx, "GET", audiencePath(rest[1]), "", nil, &au); err != nil {
			return err
		}
		zones := strings.Join(au.Zones, ", ")
		if zones == "" {
			zones = "-"
		}
		_, err := fmt.Fprintf(stdout, "id:          %s\nname:        %s\nrecipients:  %d (%d ios, %d android)\nzones:       %s\ncreated:     %s by %s\n",
			au.ID, au.Name, au.Recipients, au.IOS, au.Android, zones, au.CreatedAt.UTC().Format(time.RFC3339), au.CreatedBy)
		return err
	case "export":
		file := "-"
		if len(rest) == 3 {
			file = rest[2]
		}
		return listExport(ctx, a, audiencePath(rest[1]), rest[1], file, stdout)
	case "delete":
		if err := a.do(ctx, "DELETE", audiencePath(rest[1]), "", nil, nil); err != nil {
			return err
		}
		_, err := fmt.Fprintf(stdout, "%s: deleted\n", rest[1])
		return err
	}
	return nil
}

func audiencePath(id string) string { return "/api/audiences/" + url.PathEscape(id) }

// audienceImport sends a CSV file (- for stdin) as it reads it.
func audienceImport(ctx context.Context, a *adminClient, name, file string, stdin io.Reader, stdout io.Writer) error {
	body, closeBody, err := openInput(file, stdin)
	if err != nil {
		return err
	}
	defer closeBody()
	var au audience
	a.http.Timeout = 0 // a big file takes as long as it takes; ^C stops it
	if err := a.do(ctx, "POST", "/api/audiences?"+url.Values{"name": {name}}.Encode(), "text/csv", io.NopCloser(body), &au); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: %s: %d recipients imported (%d ios, %d android)\n", au.ID, au.Name, au.Recipients, au.IOS, au.Android)
	return err
}
