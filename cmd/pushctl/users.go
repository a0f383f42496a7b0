package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// user is a user as the admin API answers it.
type user struct {
	Name              string    `json:"name"`
	Role              string    `json:"role"`
	Disabled          bool      `json:"disabled"`
	CreatedAt         time.Time `json:"created_at"`
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

func usersCommand(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs, a, tokenFile := adminFlags("users", `usage: pushctl users [flags] <action> [name] [role]

The console's users (admin API; admins only). Passwords are read from
stdin, one line, never from an argument: at least 12 characters.

actions:
  list              every user
  add NAME ROLE     create a user with role viewer, operator or admin
  passwd NAME       set a user's password (the user's other sessions end)
  role NAME ROLE    change a user's role
  disable NAME      disable a user: its sessions end at once
  enable NAME       enable a disabled user

  printf '%s\n' "$PASSWORD" | pushctl users add alice operator
`, getenv, stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		rest = []string{"list"}
	}
	want := map[string]int{"list": 1, "add": 3, "passwd": 2, "role": 3, "disable": 2, "enable": 2}
	if n, ok := want[rest[0]]; !ok || len(rest) != n {
		fs.Usage()
		return errors.New("users: unknown action or wrong arguments")
	}
	if err := a.init(*tokenFile); err != nil {
		return err
	}
	if rest[0] == "list" {
		var out struct {
			Users []user `json:"users"`
		}
		if err := a.do(ctx, "GET", "/api/users", "", nil, &out); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tDISABLED\tCREATED\tPASSWORD CHANGED")
		for _, u := range out.Users {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", u.Name, u.Role, u.Disabled,
				u.CreatedAt.UTC().Format(time.RFC3339), u.PasswordChangedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}

	name := rest[1]
	method, path := "PUT", "/api/users/"+url.PathEscape(name)
	body := map[string]any{}
	switch rest[0] {
	case "add":
		method, path = "POST", "/api/users"
		body["name"], body["role"] = name, rest[2]
	case "role":
		body["role"] = rest[2]
	case "disable", "enable":
		body["disabled"] = rest[0] == "disable"
	}
	if rest[0] == "add" || rest[0] == "passwd" {
		pw, err := readPassword(stdin, stdout, name)
		if err != nil {
			return err
		}
		body["password"] = pw
	}
	b, _ := json.Marshal(body)
	var u user
	if err := a.do(ctx, method, path, "application/json", bytes.NewReader(b), &u); err != nil {
		return err
	}
	state := "enabled"
	if u.Disabled {
		state = "disabled"
	}
	fmt.Fprintf(stdout, "user %s: %s, %s\n", u.Name, u.Role, state)
	return nil
}

// maxPasswordLine bounds the line read as a password.
const maxPasswordLine = 1024

// readPassword reads a password, one line, from stdin; it asks for it on
// stdout when stdin is a terminal (where it is shown as it is typed:
// pipe it in to keep it off the screen).
func readPassword(stdin io.Reader, stdout io.Writer, name string) (string, error) {
	if stdin == nil {
		return "", errors.New("the password is read from stdin, and there is none")
	}
	if f, ok := stdin.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(stdout, "Password for %s (at least 12 characters; shown as you type, pipe it in to hide it): ", name)
		}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxPasswordLine), maxPasswordLine).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password from stdin: %w", err)
	}
	if errors.Is(err, io.EOF) && len(line) == maxPasswordLine {
		return "", fmt.Errorf("password line longer than %d bytes", maxPasswordLine-1)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password on stdin: give it as one line")
	}
	return pw, nil
}
