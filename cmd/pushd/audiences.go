package main

import (
	"context"
	"encoding/json"

	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/scheduler"
	"github.com/pushd/pushd/store"
)

// testSender makes a console campaign's test send: to every whitelisted
// device token, and to the members of its audience whose user id is
// whitelisted, each device once.
type testSender struct {
	st    *store.Store
	sched *scheduler.Scheduler
}

func (t testSender) SendTest(ctx context.Context, testID string, notification json.RawMessage, audienceID string) (int, error) {
	var to []scheduler.Recipient
	var users []string
	seen := map[[2]string]bool{}
	add := func(r scheduler.Recipient) {
		if k := [2]string{r.Platform, r.Token}; !seen[k] {
			seen[k] = true
			to = append(to, r)
		}
	}
	err := t.st.EachEntry(ctx, lists.Whitelist, func(e lists.Entry) error {
		switch e.Kind {
		case lists.Token:
			add(scheduler.Recipient{Platform: e.Platform, Token: e.Value})
		case lists.User:
			users = append(users, e.Value)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if audienceID != "" && len(users) > 0 {
		members, err := t.st.AudienceUsers(ctx, audienceID, users)
		if err != nil {
			return 0, err
		}
		for _, m := range members {
			add(m)
		}
	}
	return t.sched.SendTest(ctx, testID, notification, to)
}
