package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/dispatcher"
)

func iosToken(i int) string { return fmt.Sprintf("%064x", i) }

// importAudience imports an audience of n iOS recipients through the
// port.
func importAudience(t *testing.T, b Backend, name string, n int) admin.Audience {
	t.Helper()
	var csv strings.Builder
	csv.WriteString("platform,token,user_id\n")
	for i := range n {
		fmt.Fprintf(&csv, "ios,%s,u%d\n", iosToken(i+1), i+1)
	}
	a, err := b.Audiences.ImportAudience(context.Background(), name, "operator:alice", strings.NewReader(csv.String()))
	if err != nil {
		t.Fatalf("ImportAudience %s: %v", name, err)
	}
	return a
}

// testAudiences checks admin.AudienceStore: an import all or nothing, an
// export that imports back the same, a delete that hides it.
func testAudiences(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	as := b.Audiences
	csv := "platform,token,user_id,timezone\n" +
		"ios," + iosToken(1) + ",u1,Europe/Paris\n" +
		"android,fcm:0001,u2,\n" +
		"ios," + iosToken(1) + ",again,\n" + // the same device counts once
		"ios," + iosToken(2) + ",,America/Port_of_Spain\n" +
		"ios," + iosToken(3) + ",u3,America/Port-au-Prince\n"
	a, err := as.ImportAudience(ctx, "first", "operator:alice", strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	// Zones sorted in byte order.
	if a.ID == "" || a.Name != "first" || a.Recipients != 4 || a.IOS != 3 || a.Android != 1 ||
		fmt.Sprint(a.Zones) != "[America/Port-au-Prince America/Port_of_Spain Europe/Paris]" || !a.CreatedAt.Equal(c.Now()) {
		t.Errorf("imported %+v", a)
	}
	if got, err := as.Audience(ctx, a.ID); err != nil || got.Recipients != 4 || got.Name != "first" {
		t.Errorf("Audience = %+v, %v", got, err)
	}
	// A bad line refuses the whole file: no audience appears.
	if _, err := as.ImportAudience(ctx, "bad", "operator:alice", strings.NewReader("platform,token,user_id\nios,"+iosToken(9)+",u\nios,not-hex,u\n")); err == nil {
		t.Error("an import with a bad token succeeded")
	}
	c.Advance(time.Second)
	var out bytes.Buffer
	if err := as.ExportAudience(ctx, a.ID, &out); err != nil {
		t.Fatal(err)
	}
	back, err := as.ImportAudience(ctx, "second", "operator:bob", &out)
	if err != nil || back.Recipients != a.Recipients || back.IOS != a.IOS || fmt.Sprint(back.Zones) != fmt.Sprint(a.Zones) {
		t.Errorf("export imported back = %+v, %v; want the counts of %+v", back, err, a)
	}
	all, err := as.Audiences(ctx)
	if err != nil || len(all) != 2 || all[0].ID != back.ID || all[1].ID != a.ID {
		t.Errorf("Audiences = %+v, %v; want second then first", all, err)
	}
	if err := as.DeleteAudience(ctx, a.ID, "operator:alice"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Audience":       func() error { _, err := as.Audience(ctx, a.ID); return err }(),
		"ExportAudience": as.ExportAudience(ctx, a.ID, &out),
		"DeleteAudience": as.DeleteAudience(ctx, a.ID, "operator:alice"),
	} {
		if !errors.Is(err, dispatcher.ErrNotFound) {
			t.Errorf("%s of a deleted audience: %v, want ErrNotFound", name, err)
		}
	}
	if all, err := as.Audiences(ctx); err != nil || len(all) != 1 {
		t.Errorf("Audiences after a delete = %+v, %v", all, err)
	}
}

func sessionID(i int) string { return fmt.Sprintf("%064x", 0xabc000+i) }

// testUsersSessions checks admin.UserStore: names that conflict, sessions
// that end by sign-out, a new password or a disabled user, and the
// audit records each change writes with it.
func testUsersSessions(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	us := b.Users
	alice := admin.User{Name: "alice", Role: "admin", PasswordHash: "$2a$10$hash-one"}
	created, err := us.CreateUser(ctx, alice, "admin:aaaa")
	if err != nil {
		t.Fatal(err)
	}
	if created.Name != "alice" || created.Role != "admin" || !created.CreatedAt.Equal(c.Now()) {
		t.Errorf("created %+v", created)
	}
	if _, err := us.CreateUser(ctx, alice, "admin:aaaa"); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("a name taken: %v, want ErrConflict", err)
	}
	if _, err := us.CreateUser(ctx, admin.User{Name: "bob", Role: "viewer", PasswordHash: "$2a$10$hash-two"}, "admin:aaaa"); err != nil {
		t.Fatal(err)
	}
	if _, err := us.User(ctx, "carol"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("User of an unknown name: %v, want ErrNotFound", err)
	}
	if _, _, err := us.UpdateUser(ctx, "carol", admin.UserChange{}, "admin:aaaa"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("UpdateUser of an unknown name: %v, want ErrNotFound", err)
	}
	if all, err := us.Users(ctx); err != nil || len(all) != 2 || all[0].Name != "alice" || all[1].Name != "bob" {
		t.Errorf("Users = %+v, %v", all, err)
	}

	signIn := func(i int, user string) string {
		t.Helper()
		now := c.Now()
		id := sessionID(i)
		if err := us.CreateSession(ctx, admin.Session{IDHash: id, User: user, CreatedAt: now, LastSeen: now, Address: "192.0.2.1"}, "user:"+user); err != nil {
			t.Fatalf("CreateSession: %v", err)
		}
		return id
	}
	live := func(id string) bool {
		t.Helper()
		_, _, err := us.Session(ctx, id)
		if err != nil && !errors.Is(err, dispatcher.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if err := us.CreateSession(ctx, admin.Session{IDHash: sessionID(99), User: "carol", CreatedAt: c.Now(), LastSeen: c.Now()}, "user:carol"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("a session of an unknown user: %v, want ErrNotFound", err)
	}
	s1 := signIn(1, "alice")
	signedIn := c.Now()
	// The session's age is the caller's policy: the store returns it
	// whatever its age, with when it was last used.
	later := c.Advance(2 * time.Hour)
	if err := us.TouchSession(ctx, s1, later); err != nil {
		t.Fatal(err)
	}
	if err := us.TouchSession(ctx, s1, signedIn); err != nil { // never back in time
		t.Fatal(err)
	}
	sess, u, err := us.Session(ctx, s1)
	if err != nil || sess.User != "alice" || u.Name != "alice" || !sess.CreatedAt.Equal(signedIn) || !sess.LastSeen.Equal(later) || sess.Address != "192.0.2.1" {
		t.Errorf("Session = %+v, %+v, %v; want alice's, last seen %v", sess, u, err, later)
	}

	// Sign-out ends a session, once.
	s2 := signIn(2, "alice")
	for range 2 {
		if err := us.EndSession(ctx, s2, "user:alice", "auth.logout", c.Now()); err != nil {
			t.Fatalf("EndSession: %v", err)
		}
	}
	if live(s2) || !live(s1) {
		t.Errorf("after a sign-out: s2 live %v, s1 live %v", live(s2), live(s1))
	}
	// A new password ends every session but the one kept.
	s3 := signIn(3, "alice")
	s4 := signIn(4, "bob")
	if _, after, err := us.UpdateUser(ctx, "alice", admin.UserChange{PasswordHash: "$2a$10$hash-new", KeepSession: s3}, "user:alice"); err != nil || after.PasswordHash != "$2a$10$hash-new" || !after.PasswordChangedAt.Equal(c.Now()) {
		t.Errorf("password change = %+v, %v", after, err)
	}
	if live(s1) || !live(s3) || !live(s4) {
		t.Errorf("after a new password: s1 %v (want gone), s3 %v, s4 %v (want live)", live(s1), live(s3), live(s4))
	}
	// Disabling a user ends all its sessions.
	yes := true
	if _, after, err := us.UpdateUser(ctx, "alice", admin.UserChange{Disabled: &yes}, "admin:aaaa"); err != nil || !after.Disabled {
		t.Errorf("disable = %+v, %v", after, err)
	}
	if live(s3) || !live(s4) {
		t.Errorf("after disabling alice: s3 %v (want gone), s4 %v", live(s3), live(s4))
	}

	recs, err := b.AuditLog.AuditEntries(ctx, admin.AuditQuery{Target: "alice", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for i := len(recs) - 1; i >= 0; i-- {
		actions = append(actions, recs[i].Action)
	}
	want := "[user.create auth.login auth.login auth.logout auth.login user.update user.update]"
	if fmt.Sprint(actions) != want {
		t.Errorf("alice's audit records = %v, want %s", actions, want)
	}

	// Users come in byte order of their names.
	for _, name := range []string{"ab", "a_b", "a-c"} {
		if _, err := us.CreateUser(ctx, admin.User{Name: name, Role: "viewer", PasswordHash: "$2a$10$hash"}, "admin:aaaa"); err != nil {
			t.Fatal(err)
		}
	}
	all, err := us.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byteOrder(t, "Users", all, func(u admin.User) string { return u.Name }, "[a-c a_b ab alice bob]")
}

// testAudit checks admin.Auditor and admin.AuditReader: records appended
// with increasing ids, read newest first, filtered, and paged without a
// record lost or shown twice.
func testAudit(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	start := c.Now()
	actors := []string{"admin:aaaa", "user:alice", "operator:bbbb"}
	const n = 12
	for i := range n {
		e := admin.AuditEntry{Actor: actors[i%3], Action: []string{"campaign.pause", "limit.set"}[i%2],
			Target: fmt.Sprintf("c%d", i%4), After: []byte(fmt.Sprintf(`{"i":%d}`, i))}
		if i > 0 {
			c.Advance(time.Minute)
		}
		if i%2 == 0 { // else At zero: the store's clock
			e.At = start.Add(time.Duration(i) * time.Minute)
		}
		if err := b.Auditor.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Auditor.Audit(ctx, admin.AuditEntry{Actor: "x"}); err == nil {
		t.Error("a record with no action was appended")
	}
	all, err := b.AuditLog.AuditEntries(ctx, admin.AuditQuery{Limit: 100})
	if err != nil || len(all) != n {
		t.Fatalf("AuditEntries = %d records, %v; want %d", len(all), err, n)
	}
	for i, r := range all {
		if i > 0 && r.ID >= all[i-1].ID {
			t.Errorf("record %d: id %d after %d, want newest first", i, r.ID, all[i-1].ID)
		}
		k := n - 1 - i
		if want := fmt.Sprintf(`{"i":%d}`, k); string(r.After) != want || r.Actor != actors[k%3] {
			t.Errorf("record %d = %+v, want the %d-th appended", i, r, k)
		}
		if want := start.Add(time.Duration(k) * time.Minute); !r.At.Equal(want) {
			t.Errorf("record %d: At %v, want %v", i, r.At, want)
		}
	}
	count := func(q admin.AuditQuery) int {
		t.Helper()
		q.Limit = 100
		rs, err := b.AuditLog.AuditEntries(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	for _, tc := range []struct {
		name string
		q    admin.AuditQuery
		want int
	}{
		{"actor", admin.AuditQuery{Actor: "user:alice"}, 4},
		{"action", admin.AuditQuery{Action: "limit.set"}, 6},
		{"target", admin.AuditQuery{Target: "c1"}, 3},
		{"actor and action", admin.AuditQuery{Actor: "admin:aaaa", Action: "campaign.pause"}, 2},
		{"since, inclusive", admin.AuditQuery{Since: start.Add(6 * time.Minute)}, 6},
		{"until, exclusive", admin.AuditQuery{Until: start.Add(6 * time.Minute)}, 6},
		{"nothing", admin.AuditQuery{Actor: "nobody"}, 0},
	} {
		if got := count(tc.q); got != tc.want {
			t.Errorf("%s: %d records, want %d", tc.name, got, tc.want)
		}
	}
	// Pages of 5, each starting below the last id of the one before.
	var paged []int64
	q := admin.AuditQuery{Limit: 5}
	for {
		page, err := b.AuditLog.AuditEntries(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			paged = append(paged, r.ID)
		}
		q.Before = page[len(page)-1].ID
	}
	if len(paged) != n || paged[0] != all[0].ID || paged[n-1] != all[n-1].ID {
		t.Errorf("pages gave ids %v, want those of %d records", paged, n)
	}
}
