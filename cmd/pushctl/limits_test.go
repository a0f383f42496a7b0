package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func TestLimits(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+string(body))
		op := &dispatcher.LimitSetting{PerSecond: 300, Burst: 30}
		_ = json.NewEncoder(w).Encode(map[string]any{"limits": []dispatcher.LimitInfo{
			{Level: "global"},
			{Level: "apns", PerSecond: 300, Burst: 30, Operator: op, InstanceShare: 150},
			{Level: "fcm", PerSecond: 9500, Configured: dispatcher.LimitSetting{PerSecond: 9500}, InstanceShare: 4750},
		}})
	}))
	defer srv.Close()
	run1 := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"limits", "-admin", srv.URL, "-token", "tok"}, args...), func(string) string { return "" }, nil, &out)
		return out.String(), err
	}
	out, err := run1()
	if err != nil || !strings.Contains(out, "apns    300     30     operator") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"set", "apns", "300", "30"}, {"set", "global", "1000"}, {"reset", "apns"}} {
		if _, err := run1(args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	want := []string{
		"GET /api/limits ",
		`PUT /api/limits/apns {"burst":30,"per_second":300}`,
		`PUT /api/limits/global {"burst":0,"per_second":1000}`,
		"DELETE /api/limits/apns ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range [][]string{{"set", "apns", "-1"}, {"set", "apns", "5", "x"}, {"reset"}, {"frobnicate"}} {
		if _, err := run1(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
