package lists_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pushd/pushd/lists"
)

// A Set answers whether a key is on one list, and why.
func ExampleSet() {
	black := lists.NewSet()
	black.Add(lists.User, "", "u-42", "opt_out")
	black.Add(lists.Token, lists.IOS, "8f2c...e1", "invalid_token")

	fmt.Println(black.Lookup(lists.User, "", "u-42"))
	fmt.Println(black.Lookup(lists.Token, lists.IOS, "8f2c...e1"))
	fmt.Println(black.Lookup(lists.Token, lists.Android, "8f2c...e1")) // another platform
	fmt.Println(black.Remove(lists.User, "", "u-42"), black.Len())
	// Output:
	// opt_out true
	// invalid_token true
	//  false
	// true 1
}

// source is a Source with fixed entries and no changes; pushd's store is
// the real one.
type source []lists.Entry

func (s source) EachEntry(ctx context.Context, list lists.Name, fn func(lists.Entry) error) error {
	for _, e := range s {
		if e.List == list {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s source) ListChanges(context.Context, int64, int) ([]lists.Change, error) { return nil, nil }
func (s source) ListRev(context.Context) (int64, error)                          { return 0, nil }

// Filter applies both lists to a recipient: the blacklist always, the
// whitelist in test mode.
func ExampleLists_Filter() {
	src := source{
		{List: lists.Blacklist, Kind: lists.User, Value: "u-1", Reason: "opt_out"},
		{List: lists.Blacklist, Kind: lists.Token, Platform: lists.Android, Value: "tok-b", Reason: "invalid_token"},
		{List: lists.Whitelist, Kind: lists.User, Value: "qa-1", Reason: "tester"},
		{List: lists.Whitelist, Kind: lists.User, Value: "u-1", Reason: "tester"},
	}
	l := lists.New(src, nil, lists.Config{})
	if err := l.Load(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	// In production, run l.Run(ctx) beside the dispatcher to follow changes.

	recipients := []struct {
		platform, token, userID string
		test                    bool
	}{
		{lists.IOS, "tok-a", "u-2", false},  // on no list
		{lists.IOS, "tok-a", "u-1", false},  // blacklisted user
		{lists.Android, "tok-b", "", false}, // blacklisted device
		{lists.IOS, "tok-a", "u-2", true},   // test campaign, not whitelisted
		{lists.IOS, "tok-q", "qa-1", true},  // test campaign, whitelisted
		{lists.IOS, "tok-a", "u-1", true},   // the blacklist wins
	}
	for _, r := range recipients {
		list, reason, blocked := l.Filter(r.platform, r.token, r.userID, r.test)
		if blocked {
			fmt.Printf("%s test=%v: blocked by the %s (%s)\n", r.userID, r.test, list, reason)
		} else {
			fmt.Printf("%s test=%v: send\n", r.userID, r.test)
		}
	}
	// Output:
	// u-2 test=false: send
	// u-1 test=false: blocked by the blacklist (opt_out)
	//  test=false: blocked by the blacklist (invalid_token)
	// u-2 test=true: blocked by the whitelist (not_whitelisted)
	// qa-1 test=true: send
	// u-1 test=true: blocked by the blacklist (opt_out)
}

// ReadCSV reads a list exported by CSVWriter or written by hand; the
// columns may come in any order.
func ExampleReadCSV() {
	in := `kind,value,platform,reason
user,u-1,,opt_out
token,5f1e...9a,ios,invalid_token
`
	entries, err := lists.ReadCSV(strings.NewReader(in), lists.Blacklist)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range entries {
		fmt.Printf("%s %s %q %s (%s)\n", e.List, e.Kind, e.Platform, e.Value, e.Reason)
	}

	// A bad row refuses the whole file, naming its line.
	_, err = lists.ReadCSV(strings.NewReader(in+"token,abc,windows,\n"), lists.Blacklist)
	fmt.Println(err)
	fmt.Println(errors.Is(err, lists.ErrInvalid))
	// Output:
	// blacklist user "" u-1 (opt_out)
	// blacklist token "ios" 5f1e...9a (invalid_token)
	// line 4: platform "windows": a token entry needs ios or android
	// true
}

// CSVWriter writes a list that ReadCSV reads back.
func ExampleCSVWriter() {
	w, err := lists.NewCSVWriter(os.Stdout)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range []lists.Entry{
		{List: lists.Whitelist, Kind: lists.User, Value: "qa-1", Reason: "tester"},
		{List: lists.Whitelist, Kind: lists.Token, Platform: lists.Android, Value: "fcm:abc", Reason: "test device, Pixel 8"},
	} {
		if err := w.Write(e); err != nil {
			fmt.Println(err)
			return
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// kind,value,platform,reason
	// user,qa-1,,tester
	// token,fcm:abc,android,"test device, Pixel 8"
}
