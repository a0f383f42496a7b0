package store

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/scheduler"
	"golang.org/x/sync/errgroup"
)

// With schedule.go's Claim, NextFire and Progress.
var _ scheduler.Store = (*Store)(nil)

// Audience is a stored, reusable recipient list that console campaigns
// target. Only audiences whose import finished are shown.
type Audience struct {
	ID   string
	Name string
	// Recipients counts the distinct (platform, token) pairs; IOS and
	// Android split it by platform.
	Recipients, IOS, Android int64
	// Zones are the distinct non-empty time zones of the members, sorted.
	Zones     []string
	CreatedAt time.Time
	CreatedBy string
}

// AudienceCSVHeader names the columns of an audience's CSV file, in the
// order ExportAudience writes them. ImportAudience takes them in any
// order, and timezone may be left out.
var AudienceCSVHeader = []string{"platform", "token", "user_id", "timezone"}

// Column indexes in AudienceCSVHeader.
const (
	audColPlatform = iota
	audColToken
	audColUserID
	audColTimeZone
	audColumns
)

// Limits of audiences.
const (
	// MaxAudienceName is the longest audience name, in bytes.
	MaxAudienceName = 200
	// MaxAudienceUserID is the longest user id, in bytes.
	MaxAudienceUserID = 256
	// MaxAudienceLine is the longest CSV line an import reads, in bytes:
	// a line is refused as soon as it grows past this, so that a file
	// without newlines cannot fill memory.
	MaxAudienceLine = 8 << 10
)

// audienceTxRows is how many members one import transaction writes. The
// single writer connection is held for one transaction at a time, so
// other writes (campaign counters, the ledger) wait for at most one.
const audienceTxRows = 16384

// audienceCleanRows is how many positions one CleanAudiences transaction
// deletes members from.
const audienceCleanRows = 10000

// Audience states (audiences.state).
const (
	audienceImporting = "importing"
	audienceReady     = "ready"
	audienceDeleted   = "deleted"
)

// ErrAudienceInUse is matched (with errors.Is) by the error of
// DeleteAudience when a campaign that is not over uses the audience. The
// error also matches dispatcher.ErrConflict.
var ErrAudienceInUse = errors.New("audience in use")

// audienceError is an error about an audience whose text is whole and
// meant for operators (it is shown as it is), and that matches kinds with
// errors.Is.
type audienceError struct {
	msg   string
	kinds []error
}

func (e *audienceError) Error() string { return e.msg }

func (e *audienceError) Is(target error) bool { return slices.Contains(e.kinds, target) }

func audienceNotFound(id string) error {
	return &audienceError{fmt.Sprintf("audience %q not found", id), []error{dispatcher.ErrNotFound}}
}

// ImportError is what is wrong with an audience import: the line of the
// CSV file (0 for the name), the field (a column name, "header" or
// "name"; empty for the line as a whole) and what is wrong. It matches
// dispatcher.ErrInvalid with errors.Is, and its text is meant for the
// operator who sent the file.
type ImportError struct {
	Line  int
	Field string
	Msg   string
}

// Error returns the line, the field and the problem, as in
// `line 7: token: not a valid ios device token`.
func (e *ImportError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is reports whether target is dispatcher.ErrInvalid.
func (e *ImportError) Is(target error) bool { return target == dispatcher.ErrInvalid }

// SQL of audiences.
const (
	audienceColumns = `id, name, recipients, ios, android, zones, created_at, created_by`

	sqlInsertAudience = `INSERT INTO audiences (id, name, state, created_at, created_by)
VALUES ($1, $2, 'importing', $3, $4)`

	sqlReadyAudience = `UPDATE audiences
SET state = 'ready', recipients = $2, ios = $3, android = $4, zones = $5
WHERE id = $1 AND state = 'importing'`

	// The distinct non-empty zones of an audience's members, an index
	// seek each (a loose index scan), however many members.
	sqlAudienceMemberZones = `WITH RECURSIVE z(tz) AS (
    SELECT MIN(timezone) FROM audience_members WHERE audience_id = $1 AND timezone > ''
  UNION ALL
    SELECT (SELECT MIN(timezone) FROM audience_members WHERE audience_id = $1 AND timezone > z.tz)
    FROM z WHERE z.tz IS NOT NULL
) SELECT tz FROM z WHERE tz IS NOT NULL`

	sqlDropAudience = `UPDATE audiences SET state = 'deleted' WHERE id = $1 AND state = $2`

	sqlAudience = `SELECT ` + audienceColumns + ` FROM audiences WHERE id = $1 AND state = 'ready'`

	sqlAudiences = `SELECT ` + audienceColumns + ` FROM audiences WHERE state = 'ready'
ORDER BY created_at DESC, id`

	// Campaigns that are not over keep their audience. A running
	// definition counts even when its engine campaign has finished: it
	// becomes finished soon after.
	sqlAudienceUser = `SELECT id, state FROM campaign_defs
WHERE audience_id = $1 AND state NOT IN ('finished', 'cancelled', 'missed')
ORDER BY id LIMIT 1`

	sqlStaleImports = `UPDATE audiences SET state = 'deleted'
WHERE state = 'importing' AND created_at < $1`

	sqlDroppedAudiences = `SELECT id FROM audiences a WHERE state = 'deleted'
AND EXISTS (SELECT 1 FROM audience_members m WHERE m.audience_id = a.id)`

	// Deletes the members of an audience at the next audienceCleanRows
	// positions that have members.
	sqlCleanMembers = `DELETE FROM audience_members WHERE audience_id = $1
AND pos < (SELECT MIN(pos) FROM audience_members WHERE audience_id = $1) + $2`

	memberColumns = `pos, platform, token, user_id, timezone`

	// The members whose (platform, token) is held by a member at an
	// earlier position: repeated lines of the file. The sort spills to
	// disk past the database's sort memory.
	sqlRepeatedMembers = `SELECT pos, platform FROM (
    SELECT pos, platform, ROW_NUMBER() OVER (PARTITION BY platform, token ORDER BY pos) AS n
    FROM audience_members WHERE audience_id = $1
) r WHERE n > 1`

	sqlMembers = `SELECT ` + memberColumns + ` FROM audience_members
WHERE audience_id = $1 ORDER BY pos`

	sqlMembersAfter = `SELECT ` + memberColumns + ` FROM audience_members
WHERE audience_id = $1 AND pos > $2 ORDER BY pos LIMIT $3`

	sqlMembersAfterByZone = `SELECT ` + memberColumns + ` FROM audience_members
WHERE audience_id = $1 AND (timezone, pos) > ($2, $3)
ORDER BY timezone, pos LIMIT $4`
)

// Multi-row statements of audiences.
var (
	// The audience id is bound once a statement, not once a row, and
	// the placeholders are ? (see multiRow.qmarks). SQLite's dialect.
	insertMembers = multiRow{
		prefix: `INSERT INTO audience_members (audience_id, pos, platform, token, user_id, timezone)
SELECT ?, column1, column2, column3, column4, column5 FROM (VALUES `,
		suffix: `)`,
		shared: 1,
		cols:   5,
		qmarks: true,
	}
	// insertMembersPostgres is insertMembers in PostgreSQL's dialect: $n
	// placeholders; a VALUES list in FROM needs an alias, which names its
	// columns, and its parameters their types.
	insertMembersPostgres = multiRow{
		prefix: `INSERT INTO audience_members (audience_id, pos, platform, token, user_id, timezone)
SELECT $1, column1, column2, column3, column4, column5 FROM (VALUES `,
		suffix: `) AS v (column1, column2, column3, column4, column5)`,
		shared: 1,
		cols:   5,
		casts:  []string{"::bigint", "::text", "::text", "::text", "::text"},
	}
	// Deletes an audience's members at the given positions.
	deleteMembersAt = multiRow{
		prefix: `DELETE FROM audience_members WHERE audience_id = $1 AND pos IN (`,
		suffix: `)`,
		shared: 1,
		cols:   1,
	}
	selectMembersOfUsers = multiRow{
		prefix: `SELECT ` + memberColumns + ` FROM audience_members
WHERE audience_id = $1 AND user_id IN (VALUES `,
		suffix: `) ORDER BY pos`,
		shared: 1,
		cols:   1,
	}
)

// ImportAudience stores the recipients of a CSV file as a new audience
// named name, created by createdBy, all or nothing, and audits it as
// audience.import in the transaction that makes it visible.
//
// The file has a header naming the columns platform, token and user_id,
// and optionally timezone, in any order (header names are read without
// case and surrounding spaces), then one recipient a line. A platform is
// ios or android (without case); a token is checked exactly as a batch
// recipient's (dispatcher.Recipient.Check); a user id may be empty; a
// time zone is an IANA name (time.LoadLocation) or empty (the campaign's
// zone). Tokens and user ids that start with =, +, -, @, a tab or a
// carriage return are refused, as are user ids with invalid UTF-8,
// control or bidirectional formatting characters. Empty lines, and lines
// whose fields are all empty, are skipped; a UTF-8 byte order mark at the
// start is ignored. A (platform, token) pair given twice counts once,
// where it first appears.
//
// The first problem refuses the file with an *ImportError naming its line
// and field. The file is streamed: one goroutine reads and checks it while
// another writes the members into the store in transactions of a few
// thousand, in file order, into an audience that stays hidden until one
// last transaction makes it ready, so memory stays flat however large the
// file. Repeated lines are written too, then found by one query that sorts
// the members by token (on disk, past the database's sort memory) and
// deleted, before the audience is made ready. An import that fails leaves a deleted audience whose
// members CleanAudiences removes.
func (s *Store) ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (Audience, error) {
	if err := checkAudienceName(name); err != nil {
		return Audience{}, err
	}
	a := Audience{ID: newAudienceID(), Name: name, CreatedAt: fromMillis(toMillis(s.now())), CreatedBy: createdBy}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqlInsertAudience, a.ID, a.Name, toMillis(a.CreatedAt), a.CreatedBy)
		return err
	})
	if err != nil {
		return Audience{}, fmt.Errorf("import audience %q: %w", name, err)
	}
	restore, err := s.bulkWrites(ctx)
	if err != nil {
		return Audience{}, fmt.Errorf("import audience %q: %w", name, err)
	}
	defer restore()
	imp := &audienceImport{s: s, id: a.ID, zones: map[string]bool{}}
	err = imp.run(ctx, r)
	if err == nil {
		a.Recipients, a.IOS, a.Android = imp.ios+imp.android, imp.ios, imp.android
		err = s.write(ctx, func(tx *sql.Tx) error {
			// Those of the members kept: a repeated line's zone is not.
			zones, err := memberZones(ctx, tx, a.ID)
			if err != nil {
				return err
			}
			a.Zones = zones
			res, err := tx.ExecContext(ctx, sqlReadyAudience, a.ID, a.Recipients, a.IOS, a.Android, strings.Join(a.Zones, ","))
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return fmt.Errorf("audience %s is no longer importing (cleaned as stale?): %d rows, %v", a.ID, n, err)
			}
			return s.auditAudience(ctx, tx, createdBy, "audience.import", a.ID, nil, &a)
		})
	}
	if err != nil {
		// Hidden for good; the members go with CleanAudiences.
		dctx := context.WithoutCancel(ctx)
		derr := s.write(dctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(dctx, sqlDropAudience, a.ID, audienceImporting)
			return err
		})
		var ie *ImportError
		if errors.As(err, &ie) && derr == nil {
			return Audience{}, ie // whole, for the operator
		}
		return Audience{}, fmt.Errorf("import audience %q: %w", name, errors.Join(err, derr))
	}
	return a, nil
}

// Settings of the writer connection while imports run (see bulkWrites),
// and the defaults it goes back to.
const (
	bulkCacheKiB        = 16 << 10
	bulkAutoCheckpoint  = 10000 // pages
	defaultCacheKiB     = 2000  // SQLite's default
	defaultAutoCheckpnt = 1000  // pages, SQLite's default
)

// bulkWrites gives the writer connection a larger page cache and a
// larger WAL between automatic checkpoints until restore is called (by
// the last of imports running at once). An import's members go to the
// end of two indexes (by position, and by zone and position in each
// zone): a larger cache keeps those ends in memory, and checkpoints come
// less often than every 1000 pages. The defaults come back after, so that
// pushd's memory stays flat the rest of the time.
func (s *Store) bulkWrites(ctx context.Context) (restore func(), err error) {
	if s.dialect == dialectPostgres {
		return func() {}, nil // SQLite's page cache and WAL only
	}
	set := func(ctx context.Context, cacheKiB, checkpoint int) error {
		_, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", cacheKiB))
		if err == nil {
			_, err = s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", checkpoint))
		}
		return err
	}
	s.bulkMu.Lock()
	defer s.bulkMu.Unlock()
	if s.bulk == 0 {
		if err := set(ctx, bulkCacheKiB, bulkAutoCheckpoint); err != nil {
			return nil, fmt.Errorf("writer settings: %w", err)
		}
	}
	s.bulk++
	return func() {
		s.bulkMu.Lock()
		defer s.bulkMu.Unlock()
		if s.bulk--; s.bulk == 0 {
			// Failing, the settings stay until the next import ends.
			_ = set(context.WithoutCancel(ctx), defaultCacheKiB, defaultAutoCheckpnt)
		}
	}, nil
}

// audienceImport is one import's state while it reads its file.
type audienceImport struct {
	s  *Store
	id string

	// Owned by read until it returns.
	cols [audColumns]int // index of each column in a line; -1: absent
	pos  int64           // of the last member read
	// Members by platform: lines read, then less the repeats deleted.
	ios, android int64
	zones        map[string]bool // the zones met so far, checked once each
}

// run reads the file and writes its members, in two goroutines, then
// deletes the repeated ones.
func (imp *audienceImport) run(ctx context.Context, r io.Reader) error {
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []scheduler.Recipient, 1)
	g.Go(func() error {
		defer close(batches)
		return imp.read(gctx, r, batches)
	})
	g.Go(func() error {
		for ms := range batches {
			if err := imp.write(gctx, ms); err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	return imp.dropRepeats(ctx)
}

// read reads and checks the file, and sends its members to out in
// batches of importTxRows.
func (imp *audienceImport) read(ctx context.Context, r io.Reader, out chan<- []scheduler.Recipient) error {
	lr := &lists.LineLimitReader{R: r, Max: MaxAudienceLine}
	br := bufio.NewReader(lr)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1

	header, err := cr.Read()
	if err == io.EOF {
		return &ImportError{Line: 1, Field: "header", Msg: "no header: the first line must name the columns platform,token,user_id and optionally timezone"}
	}
	if err != nil {
		return readError(err, lr)
	}
	line, _ := cr.FieldPos(0)
	if err := imp.parseHeader(header); err != nil {
		return &ImportError{Line: line, Field: "header", Msg: err.Error()}
	}
	cr.FieldsPerRecord = len(header)
	batch := make([]scheduler.Recipient, 0, imp.s.importTxRows)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		batch = make([]scheduler.Recipient, 0, imp.s.importTxRows)
		return nil
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return readError(err, lr)
		}
		if blankRecord(rec) {
			continue
		}
		line, _ := cr.FieldPos(0)
		m, err := imp.member(rec, line)
		if err != nil {
			return err
		}
		batch = append(batch, m)
		if len(batch) >= imp.s.importTxRows {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

// parseHeader finds the columns in a header line.
func (imp *audienceImport) parseHeader(header []string) error {
	for c := range imp.cols {
		imp.cols[c] = -1
	}
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(name))
		c := slices.Index(AudienceCSVHeader, name)
		switch {
		case c < 0:
			return fmt.Errorf("unknown column %q (want platform,token,user_id and optionally timezone, in any order)", name)
		case imp.cols[c] >= 0:
			return fmt.Errorf("column %q twice", name)
		}
		imp.cols[c] = i
	}
	for c := range audColTimeZone {
		if imp.cols[c] < 0 {
			return fmt.Errorf("no column %q (want platform,token,user_id and optionally timezone, in any order)", AudienceCSVHeader[c])
		}
	}
	return nil
}

// member checks the record read at line and returns it as the next
// member.
func (imp *audienceImport) member(rec []string, line int) (scheduler.Recipient, error) {
	bad := func(field, format string, args ...any) (scheduler.Recipient, error) {
		return scheduler.Recipient{}, &ImportError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	var m scheduler.Recipient
	var p dispatcher.Platform
	switch platform := strings.ToLower(strings.TrimSpace(rec[imp.cols[audColPlatform]])); platform {
	case "ios":
		p, m.Platform = dispatcher.IOS, "ios"
	case "android":
		p, m.Platform = dispatcher.Android, "android"
	default:
		return bad("platform", "%q: want ios or android", clip(platform))
	}
	m.Token = rec[imp.cols[audColToken]]
	if msg := formulaProblem(m.Token); msg != "" {
		return bad("token", "%s", msg)
	}
	r := dispatcher.Recipient{Platform: p, Token: m.Token}
	if err := r.Check(); err != nil {
		return bad("token", "not a valid %s device token (%v)", m.Platform, err)
	}
	m.UserID = rec[imp.cols[audColUserID]]
	if msg := userIDProblem(m.UserID); msg != "" {
		return bad("user_id", "%s", msg)
	}
	if c := imp.cols[audColTimeZone]; c >= 0 {
		m.TimeZone = strings.TrimSpace(rec[c])
		if msg := imp.zoneProblem(m.TimeZone); msg != "" {
			return bad("timezone", "%s", msg)
		}
	}
	imp.pos++
	m.Pos = imp.pos
	// The record's fields share one string per line: copy them out of it
	// rather than keep the line alive.
	m.Token, m.UserID, m.TimeZone = strings.Clone(m.Token), strings.Clone(m.UserID), strings.Clone(m.TimeZone)
	if p == dispatcher.Android {
		imp.android++
	} else {
		imp.ios++
	}
	return m, nil
}

// zoneProblem checks a time zone, loading each distinct one once.
func (imp *audienceImport) zoneProblem(z string) string {
	if z == "" || imp.zones[z] {
		return ""
	}
	if z == "Local" {
		return `"Local" depends on the machine: give an IANA name such as Europe/Paris`
	}
	if _, err := time.LoadLocation(z); err != nil {
		return fmt.Sprintf("%q is not an IANA time zone name (such as Asia/Seoul)", clip(z))
	}
	imp.zones[z] = true
	return ""
}

// write writes members in one transaction, in file order: each goes to
// the end of the primary key. The audience is hidden, so no other
// transaction reads its members: on PostgreSQL the writes need not take
// the store's write lock (writeShared).
func (imp *audienceImport) write(ctx context.Context, ms []scheduler.Recipient) error {
	ins := insertMembers
	if imp.s.dialect == dialectPostgres {
		ins = insertMembersPostgres
	}
	err := imp.s.writeShared(ctx, func(tx *sql.Tx) error {
		b := newBulk(tx, ins)
		defer b.close()
		return chunks(len(ms), func(lo, hi int) error {
			args := append(b.args[:0], imp.id)
			for _, m := range ms[lo:hi] {
				args = append(args, m.Pos, m.Platform, m.Token, m.UserID, m.TimeZone)
			}
			_, err := b.exec(ctx, hi-lo, args)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("write members: %w", err)
	}
	return nil
}

// dropRepeats deletes the members whose (platform, token) a member at an
// earlier position holds, a few thousand a transaction, and takes them off
// the counts. Tokens are compared whole, so the counts are exact.
func (imp *audienceImport) dropRepeats(ctx context.Context) error {
	rows, err := imp.s.r.QueryContext(ctx, sqlRepeatedMembers, imp.id)
	if err != nil {
		return fmt.Errorf("find repeats: %w", err)
	}
	defer rows.Close()
	var at []int64
	drop := func() error {
		if len(at) == 0 {
			return nil
		}
		err := imp.s.writeShared(ctx, func(tx *sql.Tx) error {
			b := newBulk(tx, deleteMembersAt)
			defer b.close()
			return chunks(len(at), func(lo, hi int) error {
				args := append(b.args[:0], imp.id)
				for _, p := range at[lo:hi] {
					args = append(args, p)
				}
				_, err := b.exec(ctx, hi-lo, args)
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("delete repeats: %w", err)
		}
		at = at[:0]
		return nil
	}
	for rows.Next() {
		var (
			pos      int64
			platform string
		)
		if err := rows.Scan(&pos, &platform); err != nil {
			return fmt.Errorf("find repeats: %w", err)
		}
		if platform == "android" {
			imp.android--
		} else {
			imp.ios--
		}
		if at = append(at, pos); len(at) >= audienceCleanRows {
			if err := drop(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("find repeats: %w", err)
	}
	return drop()
}

// memberZones returns the distinct non-empty zones of an audience's
// members, sorted; nil when there are none.
func memberZones(ctx context.Context, tx *sql.Tx, id string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, sqlAudienceMemberZones, id)
	if err != nil {
		return nil, fmt.Errorf("read zones: %w", err)
	}
	defer rows.Close()
	var zones []string
	for rows.Next() {
		var z string
		if err := rows.Scan(&z); err != nil {
			return nil, fmt.Errorf("read zones: %w", err)
		}
		zones = append(zones, z)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read zones: %w", err)
	}
	return zones, nil
}

// blankRecord reports whether every field of a record is empty or spaces.
func blankRecord(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// readError turns an error reading the CSV file into an *ImportError
// where it is the file's fault.
func readError(err error, lr *lists.LineLimitReader) error {
	var long *lists.LineTooLongError
	var pe *csv.ParseError
	switch {
	case errors.As(err, &long):
		return &ImportError{Line: long.Line, Msg: fmt.Sprintf("line longer than %d bytes", MaxAudienceLine)}
	case errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount):
		return &ImportError{Line: pe.Line, Msg: "a different number of fields than the header"}
	case errors.As(err, &pe):
		return &ImportError{Line: pe.Line, Msg: fmt.Sprintf("column %d: %v", pe.Column, pe.Err)}
	}
	return fmt.Errorf("read csv near line %d: %w", lr.Line(), err)
}

// formulaProblem says why a value that must not start a spreadsheet
// formula does, or returns "".
func formulaProblem(v string) string {
	if lists.EscapeFormula(v) != v {
		return fmt.Sprintf("starts with %q, which spreadsheets run as a formula", strings.TrimLeft(v, "'")[:1])
	}
	return ""
}

// userIDProblem says what is wrong with a user id, or returns "".
func userIDProblem(v string) string {
	if len(v) > MaxAudienceUserID {
		return fmt.Sprintf("longer than %d bytes", MaxAudienceUserID)
	}
	if msg := textProblem(v); msg != "" {
		return msg
	}
	return formulaProblem(v)
}

func checkAudienceName(name string) error {
	bad := func(msg string) error { return &ImportError{Field: "name", Msg: msg} }
	switch {
	case strings.TrimSpace(name) == "":
		return bad("empty: give the audience a name")
	case len(name) > MaxAudienceName:
		return bad(fmt.Sprintf("longer than %d bytes", MaxAudienceName))
	}
	if msg := textProblem(name); msg != "" {
		return bad(msg)
	}
	return nil
}

// textProblem says why s is not plain text (invalid UTF-8, control
// characters, or bidirectional formatting characters that make text read
// other than it is), or returns "".
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for _, c := range s {
		switch {
		case unicode.IsControl(c):
			return fmt.Sprintf("control character %U", c)
		case unicode.Is(unicode.Bidi_Control, c):
			return fmt.Sprintf("bidirectional formatting character %U", c)
		}
	}
	return ""
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// newAudienceID returns a generated audience id: "a-" and 16 base32
// digits (80 random bits), URL-safe.
func newAudienceID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "a-" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// Audiences returns the ready audiences, newest first.
func (s *Store) Audiences(ctx context.Context) ([]Audience, error) {
	rows, err := s.r.QueryContext(ctx, sqlAudiences)
	if err != nil {
		return nil, fmt.Errorf("audiences: %w", err)
	}
	defer rows.Close()
	as := []Audience{}
	for rows.Next() {
		a, err := scanAudience(rows)
		if err != nil {
			return nil, fmt.Errorf("audiences: %w", err)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audiences: %w", err)
	}
	return as, nil
}

// Audience returns a ready audience. One that is not there, still
// importing or deleted matches dispatcher.ErrNotFound.
func (s *Store) Audience(ctx context.Context, id string) (Audience, error) {
	return getAudience(ctx, s.r, id)
}

func getAudience(ctx context.Context, q querier, id string) (Audience, error) {
	a, err := scanAudience(q.QueryRowContext(ctx, sqlAudience, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Audience{}, audienceNotFound(id)
	}
	if err != nil {
		return Audience{}, fmt.Errorf("audience %q: %w", id, err)
	}
	return a, nil
}

func scanAudience(row interface{ Scan(dest ...any) error }) (Audience, error) {
	var (
		a         Audience
		zones     string
		createdAt int64
	)
	if err := row.Scan(&a.ID, &a.Name, &a.Recipients, &a.IOS, &a.Android, &zones, &createdAt, &a.CreatedBy); err != nil {
		return Audience{}, err
	}
	if zones != "" {
		a.Zones = strings.Split(zones, ",")
	}
	a.CreatedAt = fromMillis(createdAt)
	return a, nil
}

// ExportAudience writes a ready audience to w as CSV that ImportAudience
// reads back: the header AudienceCSVHeader, then its members in the order
// of the file it was imported from. Every field is escaped against
// spreadsheet formulas (lists.EscapeFormula). The members are read from
// one snapshot and streamed. An audience that is not ready matches
// dispatcher.ErrNotFound, and then nothing is written.
func (s *Store) ExportAudience(ctx context.Context, id string, w io.Writer) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("export audience %q: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := getAudience(ctx, tx, id); err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, sqlMembers, id)
	if err != nil {
		return fmt.Errorf("export audience %q: %w", id, err)
	}
	defer rows.Close()
	cw := csv.NewWriter(w)
	if err := cw.Write(AudienceCSVHeader); err != nil {
		return fmt.Errorf("export audience %q: %w", id, err)
	}
	rec := make([]string, audColumns)
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return fmt.Errorf("export audience %q: %w", id, err)
		}
		rec[audColPlatform] = lists.EscapeFormula(m.Platform)
		rec[audColToken] = lists.EscapeFormula(m.Token)
		rec[audColUserID] = lists.EscapeFormula(m.UserID)
		rec[audColTimeZone] = lists.EscapeFormula(m.TimeZone)
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("export audience %q: %w", id, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export audience %q: %w", id, err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("export audience %q: %w", id, err)
	}
	return nil
}

func scanMember(row interface{ Scan(dest ...any) error }) (scheduler.Recipient, error) {
	var m scheduler.Recipient
	err := row.Scan(&m.Pos, &m.Platform, &m.Token, &m.UserID, &m.TimeZone)
	return m, err
}

// DeleteAudience deletes a ready audience for actor and audits it as
// audience.delete in the same transaction. It is refused with an error
// matching ErrAudienceInUse and dispatcher.ErrConflict while a campaign
// that is not finished, cancelled or missed uses it; an audience that is
// not ready matches dispatcher.ErrNotFound. The audience is hidden at
// once; CleanAudiences removes its members.
func (s *Store) DeleteAudience(ctx context.Context, id, actor string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		a, err := getAudience(ctx, tx, id)
		if err != nil {
			return err
		}
		var campaign, state string
		err = tx.QueryRowContext(ctx, sqlAudienceUser, id).Scan(&campaign, &state)
		switch {
		case err == nil:
			return &audienceError{
				fmt.Sprintf("audience %q is used by campaign %q (%s): delete it when the campaign is over", id, campaign, state),
				[]error{ErrAudienceInUse, dispatcher.ErrConflict},
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := tx.ExecContext(ctx, sqlDropAudience, id, audienceReady); err != nil {
			return err
		}
		return s.auditAudience(ctx, tx, actor, "audience.delete", id, &a, nil)
	})
	var ae *audienceError
	if err != nil && !errors.As(err, &ae) {
		return fmt.Errorf("delete audience %q: %w", id, err)
	}
	return err
}

// CleanAudiences marks deleted the imports still running that began
// before staleBefore (their pushd died), and removes the members of
// deleted audiences, a few thousand a transaction. It returns how many
// members it removed.
func (s *Store) CleanAudiences(ctx context.Context, staleBefore time.Time) (int, error) {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqlStaleImports, toMillis(staleBefore))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("clean audiences: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, sqlDroppedAudiences)
	if err != nil {
		return 0, fmt.Errorf("clean audiences: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("clean audiences: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("clean audiences: %w", err)
	}
	removed := 0
	for _, id := range ids {
		for {
			var n int64
			err := s.write(ctx, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, sqlCleanMembers, id, audienceCleanRows)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			if err != nil {
				return removed, fmt.Errorf("clean audience %s: %w", id, err)
			}
			removed += int(n)
			if n == 0 {
				break
			}
		}
	}
	return removed, nil
}

// Recipients streams the members of a ready audience after the cursor,
// in pos order, or in (TimeZone, Pos) order when byZone, calling fn with
// chunks of at most n (at least 1) that never mix zones when byZone. A
// chunk's slice is reused after fn returns. It returns the first error fn
// returns, as it is; an audience that is not ready matches
// dispatcher.ErrNotFound. Each chunk is its own query, from where the
// last one ended.
func (s *Store) Recipients(ctx context.Context, audienceID string, byZone bool, after scheduler.Cursor, n int, fn func([]scheduler.Recipient) error) error {
	if _, err := s.Audience(ctx, audienceID); err != nil {
		return err
	}
	n = max(n, 1)
	buf := make([]scheduler.Recipient, 0, n)
	for {
		var (
			rows *sql.Rows
			err  error
		)
		if byZone {
			rows, err = s.r.QueryContext(ctx, sqlMembersAfterByZone, audienceID, after.Zone, after.Pos, n)
		} else {
			rows, err = s.r.QueryContext(ctx, sqlMembersAfter, audienceID, after.Pos, n)
		}
		if err != nil {
			return fmt.Errorf("audience %s recipients: %w", audienceID, err)
		}
		buf, err = appendMembers(buf[:0], rows)
		if err != nil {
			return fmt.Errorf("audience %s recipients: %w", audienceID, err)
		}
		if len(buf) == 0 {
			return nil
		}
		last := buf[len(buf)-1]
		after = scheduler.Cursor{Pos: last.Pos}
		if byZone {
			after.Zone = last.TimeZone
		}
		// A query's rows, split where the zone changes.
		for rest := buf; len(rest) > 0; {
			i := len(rest)
			if byZone {
				i = 1
				for i < len(rest) && rest[i].TimeZone == rest[0].TimeZone {
					i++
				}
			}
			if err := fn(rest[:i]); err != nil {
				return err
			}
			rest = rest[i:]
		}
		if len(buf) < n {
			return nil
		}
	}
}

// appendMembers appends the rows of memberColumns to ms and closes rows.
func appendMembers(ms []scheduler.Recipient, rows *sql.Rows) ([]scheduler.Recipient, error) {
	defer rows.Close()
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return ms, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// AudienceUsers returns the members of a ready audience whose user id is
// one of userIDs, in pos order; it is meant for test sends, to a few
// users. No index covers user ids: every 32 user ids cost a scan of the
// audience's members.
func (s *Store) AudienceUsers(ctx context.Context, audienceID string, userIDs []string) ([]scheduler.Recipient, error) {
	if _, err := s.Audience(ctx, audienceID); err != nil {
		return nil, err
	}
	ids := slices.Compact(slices.Sorted(slices.Values(userIDs)))
	ms := []scheduler.Recipient{}
	err := chunks(len(ids), func(lo, hi int) error {
		args := []any{audienceID}
		for _, u := range ids[lo:hi] {
			args = append(args, u)
		}
		rows, err := s.r.QueryContext(ctx, selectMembersOfUsers.sql(hi-lo), args...)
		if err != nil {
			return err
		}
		ms, err = appendMembers(ms, rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audience %s users: %w", audienceID, err)
	}
	if len(ids) > listChunk {
		slices.SortFunc(ms, func(a, b scheduler.Recipient) int { return cmp.Compare(a.Pos, b.Pos) })
	}
	return ms, nil
}

// audienceAudit is an audience as its audit records show it.
type audienceAudit struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Recipients int64     `json:"recipients"`
	IOS        int64     `json:"ios"`
	Android    int64     `json:"android"`
	Zones      []string  `json:"zones,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	CreatedBy  string    `json:"created_by"`
}

// auditAudience records a change to an audience inside tx, the
// transaction of the change: the change stands only with its record.
// before or after is nil for none.
func (s *Store) auditAudience(ctx context.Context, tx *sql.Tx, actor, action, id string, before, after *Audience) error {
	js := func(a *Audience) any {
		if a == nil {
			return nil
		}
		return audienceAudit(*a)
	}
	return auditTx(ctx, tx, s.now(), actor, action, id, js(before), js(after))
}
