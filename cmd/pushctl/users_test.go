package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

func TestUsersCommand(t *testing.T) {
	url, got := recordingAdmin(t, `{"name":"alice","role":"operator","disabled":false}`)
	tokenFile := tokenFileFor(t)
	run1 := func(stdin io.Reader, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"users", "-admin", url, "-token-file", tokenFile}, args...), func(string) string { return "" }, stdin, &out)
		return out.String(), err
	}
	out, err := run1(strings.NewReader("correct horse battery\nnext line\n"), "add", "alice", "operator")
	if err != nil || out != "user alice: operator, enabled\n" {
		t.Fatalf("add: %v %q", err, out)
	}
	if _, err := run1(strings.NewReader("a new passphrase\r\n"), "passwd", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := run1(strings.NewReader("no newline at the end"), "passwd", "alice"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"role", "alice", "admin"}, {"disable", "alice"}, {"enable", "alice"}} {
		if _, err := run1(nil, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{
		`POST /api/users {"name":"alice","password":"correct horse battery","role":"operator"}`,
		`PUT /api/users/alice {"password":"a new passphrase"}`,
		`PUT /api/users/alice {"password":"no newline at the end"}`,
		`PUT /api/users/alice {"role":"admin"}`,
		`PUT /api/users/alice {"disabled":true}`,
		`PUT /api/users/alice {"disabled":false}`,
	}
	if strings.Join(*got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(*got, "\n"), strings.Join(want, "\n"))
	}
	// The password comes from stdin only.
	for _, tc := range []struct {
		stdin io.Reader
		args  []string
		want  string
	}{
		{nil, []string{"add", "bob", "viewer"}, "stdin"},
		{strings.NewReader("\n"), []string{"passwd", "bob"}, "no password"},
		{strings.NewReader(strings.Repeat("x", 2000)), []string{"passwd", "bob"}, "longer than"},
		{strings.NewReader("pw\n"), []string{"add", "bob", "viewer", "correct horse battery"}, "wrong arguments"},
		{nil, []string{"passwd"}, "wrong arguments"},
		{nil, []string{"frobnicate", "bob"}, "unknown action"},
	} {
		n := len(*got)
		if _, err := run1(tc.stdin, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
		if len(*got) != n {
			t.Errorf("%v: a request was sent", tc.args)
		}
	}
}

func TestUsersList(t *testing.T) {
	url, _ := recordingAdmin(t, `{"users":[{"name":"alice","role":"admin","disabled":false,"created_at":"2026-12-01T09:00:00Z","password_changed_at":"2026-12-02T09:00:00Z"},{"name":"bob","role":"viewer","disabled":true,"created_at":"2026-12-01T10:00:00Z","password_changed_at":"2026-12-01T10:00:00Z"}]}`)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"users", "-admin", url, "-token-file", tokenFileFor(t), "list"}, func(string) string { return "" }, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"NAME", "alice  admin   false     2026-12-01T09:00:00Z  2026-12-02T09:00:00Z", "bob    viewer  true"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("list lacks %q:\n%s", s, out.String())
		}
	}
}
