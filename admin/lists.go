package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/pushd/pushd/lists"
)

// ListStore is what the admin module needs from the store to manage the
// blacklist and whitelist.
//
// Each change made with an audit.Note in its context writes its audit
// record in the change's own transaction, or fails and changes nothing.
// Errors wrapping lists.ErrInvalid are shown to the client as they are
// (400), dispatcher.ErrNotFound as 404; any other error is logged and
// answered with a bare 500.
type ListStore interface {
	// AddListEntries adds entries, or updates those already there; added
	// counts the new ones.
	AddListEntries(ctx context.Context, entries []lists.Entry) (added int, err error)
	// RemoveListEntries removes the entries of list with these keys;
	// removed counts those that were there.
	RemoveListEntries(ctx context.Context, list lists.Name, keys []lists.Key) (removed int, err error)
	// ImportList adds or updates entries, all or none; with replace, the
	// list holds exactly entries afterwards, and what it held before is
	// kept as a snapshot.
	ImportList(ctx context.Context, list lists.Name, entries []lists.Entry, replace bool) (imported int, err error)
	// ListEntries returns at most limit (1 to 1000) entries of list in
	// (kind, platform, value) order, strictly after the key after (the
	// zero Key: from the start).
	ListEntries(ctx context.Context, list lists.Name, after lists.Key, limit int) ([]lists.Entry, error)
	// CountListEntries returns the number of entries of list.
	CountListEntries(ctx context.Context, list lists.Name) (int, error)
	// EachEntry calls fn for every entry of list, stopping at the first
	// error fn returns.
	EachEntry(ctx context.Context, list lists.Name, fn func(lists.Entry) error) error

	// ListSnapshots returns the snapshots of list, newest first.
	ListSnapshots(ctx context.Context, list lists.Name) ([]lists.Snapshot, error)
	// EachSnapshotEntry is EachEntry for snapshot id of list; an unknown
	// snapshot is dispatcher.ErrNotFound, before fn is called.
	EachSnapshotEntry(ctx context.Context, list lists.Name, id int64, fn func(lists.Entry) error) error
	// RestoreListSnapshot replaces the entries of list with those of its
	// snapshot id (keeping what it replaces as a new snapshot) and
	// returns how many it restored.
	RestoreListSnapshot(ctx context.Context, list lists.Name, id int64) (restored int, err error)
}

const (
	// defaultPageSize and maxPageSize bound GET .../entries?limit=.
	defaultPageSize = 100
	maxPageSize     = 1000
	// importTimeout bounds reading and storing one CSV import, in place of
	// the server's read and write timeouts, which are meant for small JSON
	// requests; its body must also keep arriving (Config.ImportReadTimeout).
	importTimeout = 15 * time.Minute
	// exportWriteTimeout is how long an export may take to write the
	// next bytes; the deadline moves on as it progresses.
	exportWriteTimeout = time.Minute
)

// listHandler handles a request to an existing list.
type listHandler func(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error

// listRoute returns the handler of a list route: 503 when no ListStore is
// configured, 404 for a list other than blacklist and whitelist, h
// otherwise.
func (s *Server) listRoute(h listHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		if s.lists == nil {
			return errNoLists
		}
		list := lists.Name(r.PathValue("name"))
		if !list.Valid() {
			return notFound("no list %q: want %s or %s", list, lists.Blacklist, lists.Whitelist)
		}
		return h(w, r, p, list)
	}
}

// entryJSON is a list entry as the API shows it.
type entryJSON struct {
	Kind      lists.Kind `json:"kind"`
	Value     string     `json:"value"`
	Platform  string     `json:"platform"`
	Reason    string     `json:"reason"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

func toEntryJSON(e lists.Entry) entryJSON {
	j := entryJSON{Kind: e.Kind, Value: e.Value, Platform: e.Platform, Reason: e.Reason}
	if !e.CreatedAt.IsZero() {
		t := e.CreatedAt.UTC()
		j.CreatedAt = &t
	}
	return j
}

// entryInput is an entry to add.
type entryInput struct {
	Kind     lists.Kind `json:"kind"`
	Value    string     `json:"value"`
	Platform string     `json:"platform"`
	Reason   string     `json:"reason"`
}

// keyJSON names an entry to remove.
type keyJSON struct {
	Kind     lists.Kind `json:"kind"`
	Value    string     `json:"value"`
	Platform string     `json:"platform"`
}

// listInfo is the answer of GET /api/lists/{name}.
type listInfo struct {
	List    lists.Name `json:"list"`
	Entries int        `json:"entries"`
}

func (s *Server) getList(w http.ResponseWriter, r *http.Request, _ principal, list lists.Name) error {
	n, err := s.lists.CountListEntries(r.Context(), list)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, listInfo{List: list, Entries: n})
}

// entryPage is the answer of GET /api/lists/{name}/entries.
type entryPage struct {
	Entries []entryJSON `json:"entries"`
	// Next is the cursor of the next page ("after"); empty on the last.
	Next string `json:"next"`
}

func (s *Server) listEntries(w http.ResponseWriter, r *http.Request, _ principal, list lists.Name) error {
	q := r.URL.Query()
	limit, err := pageLimit(q)
	if err != nil {
		return err
	}
	var after lists.Key
	if v := q.Get("after"); v != "" {
		k, err := decodeCursor(v)
		if err != nil {
			return badRequest("after: not a cursor from a previous page's next")
		}
		after = k
	}
	es, err := s.lists.ListEntries(r.Context(), list, after, limit)
	if err != nil {
		return err
	}
	page := entryPage{Entries: make([]entryJSON, 0, len(es))}
	for _, e := range es {
		page.Entries = append(page.Entries, toEntryJSON(e))
	}
	if len(es) == limit {
		// Perhaps more: the next page may be empty.
		page.Next = encodeCursor(es[len(es)-1].Key())
	}
	return writeJSON(w, http.StatusOK, page)
}

// cursor is the key a page ends with, encoded as base64url JSON. Clients
// treat it as opaque.
type cursor struct {
	Kind     lists.Kind `json:"k"`
	Platform string     `json:"p"`
	Value    string     `json:"v"`
}

func encodeCursor(k lists.Key) string {
	b, _ := json.Marshal(cursor{Kind: k.Kind, Platform: k.Platform, Value: k.Value}) // strings only: can't fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (lists.Key, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return lists.Key{}, err
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return lists.Key{}, err
	}
	return lists.Key{Kind: c.Kind, Platform: c.Platform, Value: c.Value}, nil
}

// addRequest is the body of POST /api/lists/{name}/entries: one entry, or
// {"entries": [...]}.
type addRequest struct {
	entryInput
	Entries []entryInput `json:"entries"`
}

// addResult is the answer of POST /api/lists/{name}/entries.
type addResult struct {
	Added   int `json:"added"`
	Updated int `json:"updated"`
}

func (s *Server) addListEntries(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	var req addRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	in, name := req.Entries, func(i int) string { return fmt.Sprintf("entries[%d]", i) }
	switch {
	case in == nil:
		in, name = []entryInput{req.entryInput}, func(int) string { return "entry" }
	case req.entryInput != entryInput{}:
		return badRequest("request body: give one entry or \"entries\", not both")
	case len(in) == 0:
		return badRequest("request body: no entries")
	}
	// An entry given twice is added once, as given last.
	entries := make([]lists.Entry, 0, len(in))
	at := make(map[lists.Key]int, len(in))
	for i, j := range in {
		e := lists.Entry{List: list, Kind: j.Kind, Platform: j.Platform, Value: j.Value, Reason: j.Reason}
		if err := e.Validate(); err != nil {
			return badRequest("%s: %v", name(i), err)
		}
		if k, dup := at[e.Key()]; dup {
			entries[k] = e
			continue
		}
		at[e.Key()] = len(entries)
		entries = append(entries, e)
	}
	res, err := s.addEntries(r, p, list, entries)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// addEntries adds valid entries, each key once, to list, and audits it,
// for the API and the console.
func (s *Server) addEntries(r *http.Request, p principal, list lists.Name, entries []lists.Entry) (addResult, error) {
	var res addResult
	err := s.listChange(r, p, "list.add", list, func(ctx context.Context) error {
		n, err := s.lists.AddListEntries(ctx, entries)
		res = addResult{Added: n, Updated: len(entries) - n}
		return err
	})
	return res, err
}

// removeRequest is the body of DELETE /api/lists/{name}/entries.
type removeRequest struct {
	Entries []keyJSON `json:"entries"`
}

// removeResult is the answer of DELETE /api/lists/{name}/entries.
type removeResult struct {
	Removed int `json:"removed"`
}

func (s *Server) removeListEntries(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	var in []keyJSON
	name := func(i int) string { return fmt.Sprintf("entries[%d]", i) }
	if q := r.URL.Query(); q.Has("kind") || q.Has("value") || q.Has("platform") {
		// The form for curl: one entry in the query.
		in = []keyJSON{{Kind: lists.Kind(q.Get("kind")), Value: q.Get("value"), Platform: q.Get("platform")}}
		name = func(int) string { return "entry" }
	} else {
		var req removeRequest
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
		if len(req.Entries) == 0 {
			return badRequest(`request body: no entries; want {"entries": [{"kind": ..., "value": ..., "platform": ...}]}, or kind, value and platform in the query`)
		}
		in = req.Entries
	}
	keys := make([]lists.Key, 0, len(in))
	seen := make(map[lists.Key]bool, len(in))
	for i, j := range in {
		e := lists.Entry{List: list, Kind: j.Kind, Platform: j.Platform, Value: j.Value}
		if err := e.Validate(); err != nil {
			return badRequest("%s: %v", name(i), err)
		}
		if !seen[e.Key()] {
			seen[e.Key()] = true
			keys = append(keys, e.Key())
		}
	}
	res, err := s.removeEntries(r, p, list, keys)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// removeEntries removes the entries with keys, each once, from list, and
// audits it, for the API and the console.
func (s *Server) removeEntries(r *http.Request, p principal, list lists.Name, keys []lists.Key) (removeResult, error) {
	var res removeResult
	err := s.listChange(r, p, "list.remove", list, func(ctx context.Context) error {
		var err error
		res.Removed, err = s.lists.RemoveListEntries(ctx, list, keys)
		return err
	})
	return res, err
}

// importResult is the answer of POST /api/lists/{name}/import.
type importResult struct {
	Imported int `json:"imported"`
}

// importList reads a whole CSV file, checks every row, then stores it in
// one go: a bad row refuses the file. Imports run one at a time, since
// each holds its file's entries in memory; others wait their turn.
func (s *Server) importList(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/csv" {
		return unsupportedMediaType("Content-Type must be text/csv, got %q", ct)
	}
	replace := false
	if v := r.URL.Query().Get("replace"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("replace must be true or false, got %q", v)
		}
		replace = b
	}

	// A big file takes longer to send and to store than the server's
	// timeouts allow, but it must keep arriving.
	s.longUpload(w, r, importTimeout)
	res, err := s.importEntries(r, p, list, r.Body, replace)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// importEntries imports the CSV file in in into list, and audits it, for
// the API and the console.
func (s *Server) importEntries(r *http.Request, p principal, list lists.Name, in io.Reader, replace bool) (importResult, error) {
	var res importResult
	select {
	case s.importing <- struct{}{}:
		defer func() { <-s.importing }()
	case <-r.Context().Done():
		return res, fmt.Errorf("wait for another import: %w", context.Cause(r.Context()))
	}

	body := &bodyReader{r: in}
	entries, err := lists.ReadCSV(body, list)
	if err != nil {
		// A body too large or cut short, rather than a bad file.
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(body.err, &tooLarge):
			return res, body.err
		case body.err != nil:
			return res, badRequest("request body: %v", body.err)
		}
		return res, badRequest("%v", err)
	}

	err = s.listChange(r, p, "list.import", list, func(ctx context.Context) error {
		var err error
		res.Imported, err = s.lists.ImportList(ctx, list, entries, replace)
		return err
	})
	return res, err
}

// bodyReader keeps the first error reading a request body, other than
// io.EOF.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// exportList streams the list as CSV, entry by entry.
func (s *Server) exportList(w http.ResponseWriter, r *http.Request, _ principal, list lists.Name) error {
	return s.streamCSV(w, r, string(list)+".csv", entriesCSV(string(list), func(fn func(lists.Entry) error) error {
		return s.lists.EachEntry(r.Context(), list, fn)
	}))
}

// entriesCSV returns the body of a CSV export, for streamCSV: the entries
// that each gives, a row each. what names the export in errors.
func entriesCSV(what string, each func(fn func(lists.Entry) error) error) func(io.Writer) error {
	return func(w io.Writer) error {
		err := func() error {
			csvw, err := lists.NewCSVWriter(w)
			if err != nil {
				return err
			}
			if err := each(csvw.Write); err != nil {
				return err
			}
			return csvw.Flush()
		}()
		if err != nil {
			// %v: not the client's fault, even if err wraps
			// lists.ErrInvalid (a stored entry that CSVWriter refuses).
			return fmt.Errorf("export %s: %v", what, err)
		}
		return nil
	}
}

// countingWriter counts the bytes written through it and, when move is
// set, calls it every exportWriteTimeout/4 while writes go on (to move a
// write deadline on).
type countingWriter struct {
	w     io.Writer
	n     int64
	moved time.Time
	move  func(now time.Time)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if c.move != nil {
		if now := time.Now(); now.Sub(c.moved) >= exportWriteTimeout/4 {
			c.move(now)
			c.moved = now
		}
	}
	return n, err
}

// listChange makes a change to list with do, then tells OnListChange.
// The store writes the change's audit record, as action by p, in the
// change's own transaction (see package audit): a change whose record
// cannot be written fails and does not stand.
func (s *Server) listChange(r *http.Request, p principal, action string, list lists.Name, do func(context.Context) error) error {
	if err := do(noted(r.Context(), p, action)); err != nil {
		return err
	}
	if s.onListChange != nil {
		s.onListChange(list)
	}
	return nil
}
