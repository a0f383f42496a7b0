package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// A stand-in for a bcrypt hash: the store does not look into it.
const hashA, hashB = "$2a$04$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "$2a$04$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func sessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func mustUser(t *testing.T, s *Store, name, role string) User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), User{Name: name, Role: role, PasswordHash: hashA}, "admin:1234abcd")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u
}

func mustSession(t *testing.T, s *Store, id, user string, at time.Time) Session {
	t.Helper()
	sess := Session{IDHash: sessionHash(id), User: user, CreatedAt: at, LastSeen: at, Address: "192.0.2.7"}
	if err := s.CreateSession(context.Background(), sess, "user:"+user); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return sess
}

func TestUsersCreateReadUpdate(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	created := b.clock.Now().Truncate(time.Millisecond)
	u := mustUser(t, s, "alice", "operator")
	if u.Name != "alice" || u.Role != "operator" || u.PasswordHash != hashA || u.Disabled ||
		!u.CreatedAt.Equal(created) || !u.UpdatedAt.Equal(created) || !u.PasswordChangedAt.Equal(created) {
		t.Errorf("created %+v", u)
	}
	e := lastAudit(t, s)
	if e.Action != "user.create" || e.Target != "alice" || e.Actor != "admin:1234abcd" || e.Before != nil ||
		!strings.Contains(string(e.After), `"role":"operator"`) || strings.Contains(string(e.After), "$2a$") {
		t.Errorf("audit %+v (%s)", e, e.After)
	}

	if _, err := s.CreateUser(ctx, User{Name: "alice", Role: "viewer", PasswordHash: hashB}, "x"); !errors.Is(err, dispatcher.ErrConflict) {
		t.Errorf("second alice: %v, want a conflict", err)
	}
	if _, err := s.CreateUser(ctx, User{Name: "bob", Role: "root", PasswordHash: hashB}, "x"); err == nil {
		t.Error("role root accepted")
	}
	if _, err := s.User(ctx, "nobody"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	mustUser(t, s, "bob", "viewer")

	b.clock.Advance(time.Minute)
	admin, yes := "admin", true
	before, after, err := s.UpdateUser(ctx, "alice", UserChange{Role: &admin, Disabled: &yes, PasswordHash: hashB}, "admin:1234abcd")
	if err != nil {
		t.Fatal(err)
	}
	if before.Role != "operator" || after.Role != "admin" || !after.Disabled || after.PasswordHash != hashB ||
		!after.UpdatedAt.Equal(created.Add(time.Minute)) || !after.PasswordChangedAt.Equal(created.Add(time.Minute)) || !after.CreatedAt.Equal(created) {
		t.Errorf("update: before %+v after %+v", before, after)
	}
	e = lastAudit(t, s)
	if e.Action != "user.update" || !strings.Contains(string(e.Before), `"role":"operator"`) || !strings.Contains(string(e.After), `"disabled":true`) ||
		strings.Contains(string(e.Before)+string(e.After), "$2a$") {
		t.Errorf("audit %+v (%s → %s)", e, e.Before, e.After)
	}
	// Nothing to change but the role: the password's time stays.
	b.clock.Advance(time.Minute)
	viewer := "viewer"
	if _, after, err = s.UpdateUser(ctx, "alice", UserChange{Role: &viewer}, "x"); err != nil || !after.PasswordChangedAt.Equal(created.Add(time.Minute)) || after.PasswordHash != hashB {
		t.Errorf("role change: %+v %v", after, err)
	}
	if _, _, err := s.UpdateUser(ctx, "nobody", UserChange{Role: &viewer}, "x"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("update of an unknown user: %v", err)
	}

	us, err := s.Users(ctx)
	if err != nil || len(us) != 2 || us[0].Name != "alice" || us[1].Name != "bob" {
		t.Errorf("Users: %+v %v", us, err)
	}
}

func TestSessionsSurviveReopen(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	mustUser(t, s, "alice", "operator")
	at := b.clock.Now().Truncate(time.Millisecond)
	sess := mustSession(t, s, "cookie-1", "alice", at)
	if e := lastAudit(t, s); e.Action != "auth.login" || e.Actor != "user:alice" || e.Target != "alice" ||
		!strings.Contains(string(e.After), `"session":"`+sess.IDHash[:8]+`"`) || !strings.Contains(string(e.After), "192.0.2.7") {
		t.Errorf("audit %+v (%s)", e, e.After)
	}
	if err := s.CreateSession(ctx, Session{IDHash: "not-a-hash", User: "alice", CreatedAt: at, LastSeen: at}, "x"); err == nil {
		t.Error("a session id that is not a SHA-256 hash accepted")
	}
	if err := s.CreateSession(ctx, Session{IDHash: sessionHash("x"), User: "nobody", CreatedAt: at, LastSeen: at}, "x"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("session of an unknown user: %v", err)
	}

	// Touch moves last_seen forward only.
	if err := s.TouchSession(ctx, sess.IDHash, at.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, sess.IDHash, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, b)
	got, u, err := s.Session(ctx, sess.IDHash)
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "alice" || u.Name != "alice" || u.Role != "operator" || !got.CreatedAt.Equal(at) ||
		!got.LastSeen.Equal(at.Add(5*time.Second)) || got.Address != "192.0.2.7" {
		t.Errorf("after reopen: %+v %+v", got, u)
	}
	if _, _, err := s.Session(ctx, sessionHash("cookie-2")); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("unknown session: %v", err)
	}

	// Sign-out ends it and is audited; a second one is a no-op.
	if err := s.EndSession(ctx, sess.IDHash, "user:alice", "auth.logout", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if e := lastAudit(t, s); e.Action != "auth.logout" || e.Target != "alice" || !strings.Contains(string(e.Before), sess.IDHash[:8]) {
		t.Errorf("audit %+v", e)
	}
	n := auditCount(t, s)
	if err := s.EndSession(ctx, sess.IDHash, "user:alice", "auth.logout", at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if auditCount(t, s) != n {
		t.Error("ending a session that is gone was audited")
	}
	if _, _, err := s.Session(ctx, sess.IDHash); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("session after sign-out: %v", err)
	}
}

func auditCount(t *testing.T, s *Store) int {
	t.Helper()
	es, err := s.AuditLog(context.Background(), MaxAuditLimit)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestUserChangesEndSessions(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	at := b.clock.Now()
	mustUser(t, s, "alice", "operator")
	mustUser(t, s, "bob", "operator")
	a1 := mustSession(t, s, "a1", "alice", at)
	a2 := mustSession(t, s, "a2", "alice", at)
	b1 := mustSession(t, s, "b1", "bob", at)
	alive := func(sess Session) bool {
		_, _, err := s.Session(ctx, sess.IDHash)
		if err != nil && !errors.Is(err, dispatcher.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	// A new password keeps the session that changed it.
	if _, _, err := s.UpdateUser(ctx, "alice", UserChange{PasswordHash: hashB, KeepSession: a1.IDHash}, "user:alice"); err != nil {
		t.Fatal(err)
	}
	if !alive(a1) || alive(a2) || !alive(b1) {
		t.Errorf("after alice's password change: a1 %v a2 %v b1 %v, want true false true", alive(a1), alive(a2), alive(b1))
	}
	// A role change ends nothing.
	viewer := "viewer"
	if _, _, err := s.UpdateUser(ctx, "alice", UserChange{Role: &viewer}, "x"); err != nil || !alive(a1) {
		t.Errorf("role change ended the session (%v)", err)
	}
	// Disabling ends them all, even the one to keep.
	yes := true
	if _, _, err := s.UpdateUser(ctx, "alice", UserChange{Disabled: &yes, KeepSession: a1.IDHash}, "x"); err != nil {
		t.Fatal(err)
	}
	if alive(a1) || !alive(b1) {
		t.Errorf("after disabling alice: a1 %v b1 %v", alive(a1), alive(b1))
	}
}

func TestPruneSessions(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	t0 := b.clock.Now().Truncate(time.Millisecond)
	mustUser(t, s, "alice", "operator")
	old := mustSession(t, s, "old", "alice", t0)                  // created long ago, still used
	idle := mustSession(t, s, "idle", "alice", t0.Add(time.Hour)) // not used since
	fresh := mustSession(t, s, "fresh", "alice", t0.Add(2*time.Hour))
	if err := s.TouchSession(ctx, old.IDHash, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Idle before t0+90m, or created before t0+30m.
	n, err := s.PruneSessions(ctx, t0.Add(90*time.Minute), t0.Add(30*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d (%v), want 2", n, err)
	}
	for _, c := range []struct {
		sess Session
		want bool
	}{{old, false}, {idle, false}, {fresh, true}} {
		_, _, err := s.Session(ctx, c.sess.IDHash)
		if (err == nil) != c.want {
			t.Errorf("session created %s: alive %v, want %v", c.sess.CreatedAt, err == nil, c.want)
		}
	}
}
