package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/scheduler"
)

// iosToken and fcmToken return valid, distinct device tokens.
func iosToken(i int) string { return fmt.Sprintf("%064x", i) }
func fcmToken(i int) string { return fmt.Sprintf("fcm:%08d", i) }

func mustImportAudience(t *testing.T, s *Store, name, csv string) Audience {
	t.Helper()
	a, err := s.ImportAudience(context.Background(), name, "operator:alice", strings.NewReader(csv))
	if err != nil {
		t.Fatalf("ImportAudience: %v", err)
	}
	return a
}

// memberCount counts the rows of audience_members of an audience,
// whatever its state.
func memberCount(t *testing.T, s *Store, id string) int {
	t.Helper()
	var n int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM audience_members WHERE audience_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportAudience(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	in := "\uFEFF Token ,USER_ID,platform,timezone\r\n" +
		iosToken(1) + ",u-1,ios,Asia/Seoul\r\n" +
		"\r\n" +
		fcmToken(2) + ",u-2, Android ,\r\n" +
		",,,\r\n" +
		iosToken(1) + ",u-dup,ios,Europe/Paris\r\n" + // counts once, as first given
		fcmToken(3) + ",,android,America/New_York\r\n" +
		iosToken(2) + ",\"u,4\",iOS,Asia/Seoul\r\n"
	a := mustImportAudience(t, s, "spring", in)
	want := Audience{
		ID: a.ID, Name: "spring", Recipients: 4, IOS: 2, Android: 2,
		Zones:     []string{"America/New_York", "Asia/Seoul"},
		CreatedAt: b.clock.Now(), CreatedBy: "operator:alice",
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("ImportAudience =\n%+v\nwant\n%+v", a, want)
	}
	if !strings.HasPrefix(a.ID, "a-") || len(a.ID) != 18 {
		t.Errorf("id %q, want a- and 16 characters", a.ID)
	}
	got, err := s.Audience(ctx, a.ID)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Audience = %+v, %v; want %+v", got, err, want)
	}
	all, err := s.Audiences(ctx)
	if err != nil || !reflect.DeepEqual(all, []Audience{want}) {
		t.Errorf("Audiences = %+v, %v", all, err)
	}

	var buf bytes.Buffer
	if err := s.ExportAudience(ctx, a.ID, &buf); err != nil {
		t.Fatal(err)
	}
	wantCSV := "platform,token,user_id,timezone\n" +
		"ios," + iosToken(1) + ",u-1,Asia/Seoul\n" +
		"android," + fcmToken(2) + ",u-2,\n" +
		"android," + fcmToken(3) + ",,America/New_York\n" +
		"ios," + iosToken(2) + ",\"u,4\",Asia/Seoul\n"
	if buf.String() != wantCSV {
		t.Errorf("export:\n%s\nwant\n%s", buf.String(), wantCSV)
	}
	// The export imports back the same.
	again := mustImportAudience(t, s, "again", buf.String())
	if again.Recipients != 4 || again.IOS != 2 || !reflect.DeepEqual(again.Zones, want.Zones) {
		t.Errorf("import of the export: %+v", again)
	}

	log, err := s.AuditLog(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 || log[1].Action != "audience.import" || log[1].Target != a.ID || log[1].Actor != "operator:alice" || log[1].Before != nil {
		t.Fatalf("audit log %+v", log)
	}
	var after map[string]any
	if err := json.Unmarshal(log[1].After, &after); err != nil || after["recipients"] != 4.0 || after["name"] != "spring" {
		t.Errorf("audit after %s, %v", log[1].After, err)
	}
}

func TestImportAudienceNoTimezoneColumn(t *testing.T) {
	s, _ := setup(t)
	a := mustImportAudience(t, s, "plain", "platform,token,user_id\nios,"+iosToken(7)+",u\n")
	if a.Recipients != 1 || a.Zones != nil {
		t.Errorf("%+v", a)
	}
	a = mustImportAudience(t, s, "empty", "platform,token,user_id\n")
	if a.Recipients != 0 {
		t.Errorf("%+v", a)
	}
}

// bigCSV returns a file of n recipients (both platforms, three zones, and
// every tenth line a repeat of the line before), then tail.
func bigCSV(n int, tail string) (csv string, distinct int) {
	var b strings.Builder
	b.WriteString("platform,token,user_id,timezone\n")
	zones := []string{"", "Asia/Seoul", "Europe/Paris"}
	for i := range n {
		k := i
		if i%10 == 9 {
			k = i - 1
		} else {
			distinct++
		}
		if k%2 == 0 {
			fmt.Fprintf(&b, "ios,%s,u-%d,%s\n", iosToken(k), k, zones[k%3])
		} else {
			fmt.Fprintf(&b, "android,%s,u-%d,%s\n", fcmToken(k), k, zones[k%3])
		}
	}
	b.WriteString(tail)
	return b.String(), distinct
}

// smallTransactions makes s import in transactions of 512 members, so
// that tests cross several with small files.
func smallTransactions(s *Store) int {
	s.importTxRows = 512
	return s.importTxRows
}

func TestImportAudienceManyTransactions(t *testing.T) {
	s, _ := setup(t)
	n := 3*smallTransactions(s) + 17
	in, distinct := bigCSV(n, "")
	a := mustImportAudience(t, s, "big", in)
	if a.Recipients != int64(distinct) || a.IOS+a.Android != a.Recipients || memberCount(t, s, a.ID) != distinct {
		t.Errorf("%+v, %d members; want %d recipients", a, memberCount(t, s, a.ID), distinct)
	}
	if !reflect.DeepEqual(a.Zones, []string{"Asia/Seoul", "Europe/Paris"}) {
		t.Errorf("zones %q", a.Zones)
	}
}

func TestImportAudienceErrors(t *testing.T) {
	const h = "platform,token,user_id,timezone\n"
	ok := "ios," + iosToken(1) + ",u-1,\n"
	tests := []struct {
		name, audience, in string
		want               string // the whole message
	}{
		{"empty name", " ", h, "name: empty: give the audience a name"},
		{"name with a bidi override", "a\u202eb", h, "name: bidirectional formatting character U+202E"},
		{"no header", "x", "", "line 1: header: no header: the first line must name the columns platform,token,user_id and optionally timezone"},
		{"unknown column", "x", "platform,token,user_id,zone\n", `line 1: header: unknown column "zone" (want platform,token,user_id and optionally timezone, in any order)`},
		{"missing column", "x", "platform,token\n", `line 1: header: no column "user_id" (want platform,token,user_id and optionally timezone, in any order)`},
		{"column twice", "x", "platform,token,user_id,token\n", `line 1: header: column "token" twice`},
		{"bad platform", "x", h + ok + "windows," + iosToken(2) + ",u,\n", `line 3: platform: "windows": want ios or android`},
		{"short ios token", "x", h + ok + "ios,abcd,u,\n", "line 3: token: not a valid ios device token (malformed token)"},
		{"fcm token with a space", "x", h + ok + "android,fcm 1,u,\n", "line 3: token: not a valid android device token (malformed token)"},
		{"token starting a formula", "x", h + ok + "android,-fcm1,u,\n", `line 3: token: starts with "-", which spreadsheets run as a formula`},
		{"user id starting a formula", "x", h + ok + "ios," + iosToken(2) + ",=1+2,\n", `line 3: user_id: starts with "=", which spreadsheets run as a formula`},
		{"user id with a quote and a formula", "x", h + ok + "ios," + iosToken(2) + ",'@x,\n", `line 3: user_id: starts with "@", which spreadsheets run as a formula`},
		{"user id with a tab", "x", h + ok + "ios," + iosToken(2) + ",\"\tx\",\n", "line 3: user_id: control character U+0009"},
		{"user id not UTF-8", "x", h + ok + "ios," + iosToken(2) + ",u\xff,\n", "line 3: user_id: not valid UTF-8"},
		{"user id with a bidi override", "x", h + ok + "ios," + iosToken(2) + ",u\u202e,\n", "line 3: user_id: bidirectional formatting character U+202E"},
		{"user id too long", "x", h + ok + "ios," + iosToken(2) + "," + strings.Repeat("u", MaxAudienceUserID+1) + ",\n", "line 3: user_id: longer than 256 bytes"},
		{"unknown zone", "x", h + ok + "ios," + iosToken(2) + ",u,Mars/Olympus\n", `line 3: timezone: "Mars/Olympus" is not an IANA time zone name (such as Asia/Seoul)`},
		{"Local zone", "x", h + ok + "ios," + iosToken(2) + ",u,Local\n", `line 3: timezone: "Local" depends on the machine: give an IANA name such as Europe/Paris`},
		{"too few fields", "x", h + ok + "ios," + iosToken(2) + "\n", "line 3: a different number of fields than the header"},
		{"bare quote", "x", h + ok + "ios,a\"b,u,\n", `line 3: column 6: bare " in non-quoted-field`},
		{"line too long", "x", h + ok + "ios," + strings.Repeat("a", MaxAudienceLine) + ",u,\n", "line 3: line longer than 8192 bytes"},
		{"no newline at all", "x", strings.Repeat("p", 3*MaxAudienceLine), "line 1: line longer than 8192 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := setup(t)
			ctx := context.Background()
			_, err := s.ImportAudience(ctx, tt.audience, "operator:alice", strings.NewReader(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("ImportAudience = %v, want %q", err, tt.want)
			}
			var ie *ImportError
			if !errors.Is(err, dispatcher.ErrInvalid) || !errors.As(err, &ie) {
				t.Errorf("%v: want an *ImportError matching dispatcher.ErrInvalid", err)
			}
			if as, err := s.Audiences(ctx); err != nil || len(as) != 0 {
				t.Errorf("Audiences = %v, %v; want none", as, err)
			}
		})
	}
}

// TestImportAudienceFailsAfterChunks checks that a file refused after
// some of its members were written leaves nothing visible, and that
// CleanAudiences removes them.
func TestImportAudienceFailsAfterChunks(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	txRows := smallTransactions(s)
	in, _ := bigCSV(2*txRows+5, "")
	// The file arrives in two parts: the bad line only once the members
	// before it are in the store (they are written as the file is read).
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := s.ImportAudience(ctx, "big", "operator:alice", pr)
		_ = pr.CloseWithError(err) // unblocks the writes below if it failed early
		done <- err
	}()
	if _, err := io.WriteString(pw, in); err != nil {
		t.Fatalf("write the file: %v", err)
	}
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		err := s.r.QueryRow(`SELECT COUNT(*) FROM audience_members m JOIN audiences a ON a.id = m.audience_id
WHERE a.state = 'importing'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n >= 2*txRows {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d members written, want %d before the bad line is sent", n, 2*txRows)
		}
		<-poll.C
	}
	_, _ = io.WriteString(pw, "ios,bad,u,\n")
	_ = pw.Close()
	err := <-done
	if want := fmt.Sprintf("line %d: token: ", 2*txRows+7); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("ImportAudience = %v, want %q...", err, want)
	}
	var id string
	if err := s.r.QueryRow(`SELECT id FROM audiences WHERE state = 'deleted'`).Scan(&id); err != nil {
		t.Fatalf("the failed audience: %v", err)
	}
	if n := memberCount(t, s, id); n < txRows {
		t.Fatalf("%d members written before the bad line, want at least %d", n, txRows)
	}
	if _, err := s.Audience(ctx, id); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Audience(failed) = %v, want not found", err)
	}
	n, err := s.CleanAudiences(ctx, time.Time{})
	if err != nil || n < txRows || memberCount(t, s, id) != 0 {
		t.Errorf("CleanAudiences = %d, %v; %d members left", n, err, memberCount(t, s, id))
	}
	if log, _ := s.AuditLog(ctx, 10); len(log) != 0 {
		t.Errorf("a failed import is audited: %+v", log)
	}
}

// TestImportAudienceReaderError checks that a body cut short fails the
// import with the reader's error.
func TestImportAudienceReaderError(t *testing.T) {
	s, _ := setup(t)
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("platform,token,user_id\nios,"+iosToken(1)+",u\n"), errReader{boom})
	_, err := s.ImportAudience(context.Background(), "x", "a", r)
	if !errors.Is(err, boom) || errors.Is(err, dispatcher.ErrInvalid) {
		t.Errorf("ImportAudience = %v, want %v and not invalid", err, boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestCleanAudiencesStaleImports(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	// An import whose pushd died: still importing, with members.
	at := toMillis(b.clock.Now())
	if _, err := s.w.Exec(`INSERT INTO audiences (id, name, state, created_at, created_by) VALUES ('a-dead', 'x', 'importing', $1, 'a')`, at); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec(`INSERT INTO audience_members VALUES ('a-dead', 1, 'ios', 't', '', ''), ('a-dead', 2, 'ios', 't2', '', '')`); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CleanAudiences(ctx, b.clock.Now()); err != nil || n != 0 {
		t.Errorf("CleanAudiences(not stale) = %d, %v; want 0", n, err)
	}
	if n, err := s.CleanAudiences(ctx, b.clock.Now().Add(time.Millisecond)); err != nil || n != 2 {
		t.Errorf("CleanAudiences(stale) = %d, %v; want 2", n, err)
	}
}

// defineCampaign stores a console campaign in state that uses audience.
func defineCampaign(t *testing.T, s *Store, id, audience, state string) {
	t.Helper()
	_, err := s.w.Exec(`INSERT INTO campaign_defs (id, name, state, notification, audience_id, rate_per_second,
send_at, time_zone, recipient_time_zone, created_by, created_at, updated_at, version)
VALUES ($1, $1, $2, '{}', $3, 0, '', 'UTC', 0, 'a', 0, 0, 1)`, id, state, audience)
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeleteAudience(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	a := mustImportAudience(t, s, "x", "platform,token,user_id\nios,"+iosToken(1)+",u\nandroid,"+fcmToken(1)+",u\n")
	for _, st := range []string{"finished", "cancelled", "missed"} {
		defineCampaign(t, s, "over-"+st, a.ID, st)
	}
	for _, st := range []string{"draft", "awaiting_approval", "scheduled", "running"} {
		t.Run("in use by a "+st+" campaign", func(t *testing.T) {
			defineCampaign(t, s, "c-"+st, a.ID, st)
			err := s.DeleteAudience(ctx, a.ID, "operator:bob")
			want := fmt.Sprintf("audience %q is used by campaign %q (%s): delete it when the campaign is over", a.ID, "c-"+st, st)
			if !errors.Is(err, ErrAudienceInUse) || !errors.Is(err, dispatcher.ErrConflict) || err.Error() != want {
				t.Errorf("DeleteAudience = %v, want %q", err, want)
			}
			if _, err := s.w.Exec(`DELETE FROM campaign_defs WHERE id = $1`, "c-"+st); err != nil {
				t.Fatal(err)
			}
		})
	}
	if err := s.DeleteAudience(ctx, a.ID, "operator:bob"); err != nil {
		t.Fatalf("DeleteAudience: %v", err)
	}
	if _, err := s.Audience(ctx, a.ID); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Audience after delete = %v, want not found", err)
	}
	if err := s.DeleteAudience(ctx, a.ID, "operator:bob"); !errors.Is(err, dispatcher.ErrNotFound) || err.Error() != fmt.Sprintf("audience %q not found", a.ID) {
		t.Errorf("DeleteAudience again = %v, want not found", err)
	}
	if err := s.ExportAudience(ctx, a.ID, io.Discard); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("ExportAudience after delete = %v, want not found", err)
	}
	log, _ := s.AuditLog(ctx, 1)
	if len(log) != 1 || log[0].Action != "audience.delete" || log[0].Actor != "operator:bob" || log[0].After != nil || !bytes.Contains(log[0].Before, []byte(`"recipients":2`)) {
		t.Errorf("audit %+v", log)
	}
	if n, err := s.CleanAudiences(ctx, time.Time{}); err != nil || n != 2 || memberCount(t, s, a.ID) != 0 {
		t.Errorf("CleanAudiences = %d, %v", n, err)
	}
}

// TestAudienceChangesNeedTheirAudit checks that an import or a delete
// whose audit record cannot be written does not happen.
func TestAudienceChangesNeedTheirAudit(t *testing.T) {
	s, _ := setupSQLite(t) // SQLite's own SQL (triggers, query plans, pragmas)
	ctx := context.Background()
	a := mustImportAudience(t, s, "x", "platform,token,user_id\nios,"+iosToken(1)+",u\n")
	if _, err := s.w.Exec(`CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit is broken'); END`); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAudience(ctx, a.ID, "operator:bob"); err == nil || !strings.Contains(err.Error(), "audit is broken") {
		t.Errorf("DeleteAudience = %v, want the audit's error", err)
	}
	if _, err := s.Audience(ctx, a.ID); err != nil {
		t.Errorf("the audience is gone without its audit record: %v", err)
	}
	_, err := s.ImportAudience(ctx, "y", "operator:bob", strings.NewReader("platform,token,user_id\nios,"+iosToken(2)+",u\n"))
	if err == nil || !strings.Contains(err.Error(), "audit is broken") {
		t.Errorf("ImportAudience = %v, want the audit's error", err)
	}
	if as, _ := s.Audiences(ctx); len(as) != 1 {
		t.Errorf("audiences %+v, want only the first", as)
	}
}

func TestExportAudienceEscapesFormulas(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	a := mustImportAudience(t, s, "x", "platform,token,user_id\nios,"+iosToken(1)+",u\n")
	// Written by hand: imports refuse such user ids.
	if _, err := s.w.Exec(`UPDATE audience_members SET user_id = '=HYPERLINK("http://x")' WHERE audience_id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.ExportAudience(ctx, a.ID, &buf); err != nil {
		t.Fatal(err)
	}
	want := "platform,token,user_id,timezone\nios," + iosToken(1) + `,"'=HYPERLINK(""http://x"")",` + "\n"
	if buf.String() != want {
		t.Errorf("export\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestRecipients(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	in, distinct := bigCSV(100, "")
	a := mustImportAudience(t, s, "x", in)

	// read streams the audience from after in chunks of n, checking each.
	read := func(t *testing.T, byZone bool, after scheduler.Cursor, n int) []scheduler.Recipient {
		t.Helper()
		var all []scheduler.Recipient
		err := s.Recipients(ctx, a.ID, byZone, after, n, func(rs []scheduler.Recipient) error {
			if len(rs) == 0 || len(rs) > n {
				t.Errorf("chunk of %d, want 1 to %d", len(rs), n)
			}
			for _, r := range rs {
				if byZone && r.TimeZone != rs[0].TimeZone {
					t.Errorf("a chunk mixes zones %q and %q", rs[0].TimeZone, r.TimeZone)
				}
			}
			all = append(all, rs...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	inPos := read(t, false, scheduler.Cursor{}, 7)
	if len(inPos) != distinct {
		t.Fatalf("%d recipients, want %d", len(inPos), distinct)
	}
	for i, r := range inPos {
		if i > 0 && r.Pos <= inPos[i-1].Pos {
			t.Fatalf("not in pos order at %d: %d after %d", i, r.Pos, inPos[i-1].Pos)
		}
	}
	first := inPos[0]
	if first.Pos != 1 || first.Platform != "ios" || first.Token != iosToken(0) || first.UserID != "u-0" || first.TimeZone != "" {
		t.Errorf("first recipient %+v", first)
	}
	if rest := read(t, false, scheduler.Cursor{Pos: inPos[49].Pos}, 1000); !reflect.DeepEqual(rest, inPos[50:]) {
		t.Errorf("resumed after pos %d: %d recipients, want %d", inPos[49].Pos, len(rest), len(inPos)-50)
	}

	byZone := read(t, true, scheduler.Cursor{}, 7)
	if len(byZone) != distinct {
		t.Fatalf("by zone: %d recipients, want %d", len(byZone), distinct)
	}
	for i := 1; i < len(byZone); i++ {
		p, r := byZone[i-1], byZone[i]
		if r.TimeZone < p.TimeZone || r.TimeZone == p.TimeZone && r.Pos <= p.Pos {
			t.Fatalf("not in (zone, pos) order at %d: %+v after %+v", i, r, p)
		}
	}
	c := scheduler.Cursor{Zone: byZone[40].TimeZone, Pos: byZone[40].Pos}
	if rest := read(t, true, c, 1000); !reflect.DeepEqual(rest, byZone[41:]) {
		t.Errorf("resumed by zone after %+v: %d recipients, want %d", c, len(rest), len(byZone)-41)
	}

	stop := errors.New("stop")
	if err := s.Recipients(ctx, a.ID, false, scheduler.Cursor{}, 10, func([]scheduler.Recipient) error { return stop }); err != stop {
		t.Errorf("Recipients = %v, want fn's error as it is", err)
	}
	if err := s.Recipients(ctx, "a-none", false, scheduler.Cursor{}, 10, nil); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Recipients(unknown) = %v, want not found", err)
	}
}

// TestRecipientsByZoneUsesTheIndex checks that paging by zone seeks
// rather than scans the audience from its start every page.
func TestRecipientsByZoneUsesTheIndex(t *testing.T) {
	s, _ := setupSQLite(t) // SQLite's own SQL (triggers, query plans, pragmas)
	for _, q := range []string{sqlMembersAfterByZone, sqlMembersAfter} {
		rows, err := s.r.Query(`EXPLAIN QUERY PLAN `+q, "a", "", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "SEARCH") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("plan of %q: %s", q, p)
		}
	}
}

func TestAudienceUsers(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	a := mustImportAudience(t, s, "x", "platform,token,user_id,timezone\n"+
		"ios,"+iosToken(1)+",u-1,Asia/Seoul\n"+
		"android,"+fcmToken(2)+",u-2,\n"+
		"android,"+fcmToken(3)+",u-1,\n"+
		"ios,"+iosToken(4)+",,\n")
	got, err := s.AudienceUsers(ctx, a.ID, []string{"u-1", "u-9", "u-1"})
	want := []scheduler.Recipient{
		{Pos: 1, Platform: "ios", Token: iosToken(1), UserID: "u-1", TimeZone: "Asia/Seoul"},
		{Pos: 3, Platform: "android", Token: fcmToken(3), UserID: "u-1"},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("AudienceUsers = %+v, %v; want %+v", got, err, want)
	}
	// More ids than one query takes.
	many := []string{"u-2"}
	for i := range 100 {
		many = append(many, fmt.Sprintf("x-%d", i))
	}
	many = append(many, "u-1")
	if got, err := s.AudienceUsers(ctx, a.ID, many); err != nil || len(got) != 3 || got[0].Pos != 1 || got[1].Pos != 2 || got[2].Pos != 3 {
		t.Errorf("AudienceUsers(many) = %+v, %v", got, err)
	}
	if got, err := s.AudienceUsers(ctx, a.ID, nil); err != nil || len(got) != 0 {
		t.Errorf("AudienceUsers(none) = %+v, %v", got, err)
	}
	if _, err := s.AudienceUsers(ctx, "a-none", []string{"u-1"}); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("AudienceUsers(unknown) = %v, want not found", err)
	}
}

// TestImportAudienceRestoresWriterSettings checks that the writer's
// larger cache for imports is given back after.
func TestImportAudienceRestoresWriterSettings(t *testing.T) {
	s, _ := setupSQLite(t) // SQLite's own SQL (triggers, query plans, pragmas)
	mustImportAudience(t, s, "x", "platform,token,user_id\nios,"+iosToken(1)+",u\n")
	_, _ = s.ImportAudience(context.Background(), "y", "a", strings.NewReader("bad"))
	var cache, checkpoint int
	if err := s.w.QueryRow(`PRAGMA cache_size`).Scan(&cache); err != nil {
		t.Fatal(err)
	}
	if err := s.w.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&checkpoint); err != nil {
		t.Fatal(err)
	}
	if cache != -defaultCacheKiB || checkpoint != defaultAutoCheckpnt {
		t.Errorf("after imports: cache_size %d, wal_autocheckpoint %d; want -%d, %d", cache, checkpoint, defaultCacheKiB, defaultAutoCheckpnt)
	}
}
