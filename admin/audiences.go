package admin

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"
)

// AudienceStore is what the admin module needs from the store to manage
// audiences: stored, reusable recipient lists that console campaigns
// target. The store audits imports and deletions itself, in the
// transaction of the change.
//
// Errors wrapping dispatcher.ErrInvalid (a bad file: the whole error says
// which line and field), dispatcher.ErrNotFound and dispatcher.ErrConflict
// (an audience in use) are shown to the client as they are (400, 404,
// 409); any other error is logged and answered with a bare 500.
type AudienceStore interface {
	// ImportAudience stores the recipients of a CSV file as a new
	// audience, all or nothing, reading the file as it comes.
	ImportAudience(ctx context.Context, name, createdBy string, r io.Reader) (Audience, error)
	// Audiences returns every audience, newest first.
	Audiences(ctx context.Context) ([]Audience, error)
	// Audience returns one audience.
	Audience(ctx context.Context, id string) (Audience, error)
	// ExportAudience writes an audience as CSV to w; nothing is written
	// when it fails to start.
	ExportAudience(ctx context.Context, id string, w io.Writer) error
	// DeleteAudience deletes an audience for actor.
	DeleteAudience(ctx context.Context, id, actor string) error
}

// Audience is an audience as the API shows it.
type Audience struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Recipients int64  `json:"recipients"`
	IOS        int64  `json:"ios"`
	Android    int64  `json:"android"`
	// Zones are the distinct time zones of the recipients that have one,
	// sorted.
	Zones     []string  `json:"zones"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

const (
	defaultMaxAudienceBytes = 2 << 30
	// audienceImportTimeout bounds reading and storing one audience file
	// (ten million recipients take a few minutes).
	audienceImportTimeout = time.Hour
)

var errNoAudiences = &clientError{kindUnavailable, "audiences not configured"}

// audienceRoute returns the handler of an audience route: 503 when no
// AudienceStore is configured, h otherwise.
func (s *Server) audienceRoute(h apiHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		if s.audiences == nil {
			return errNoAudiences
		}
		return h(w, r, p)
	}
}

// importAudience stores the CSV body as a new audience named by the query
// parameter name. The store reads the body as it arrives.
func (s *Server) importAudience(w http.ResponseWriter, r *http.Request, p principal) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/csv" {
		return unsupportedMediaType("Content-Type must be text/csv, got %q", ct)
	}
	if !r.URL.Query().Has("name") {
		return badRequest("name is required: POST /api/audiences?name=NAME")
	}
	// A big file takes longer to send and to store than the server's
	// timeouts allow, but it must keep arriving.
	s.longUpload(w, r, audienceImportTimeout)

	body := &bodyReader{r: r.Body}
	a, err := s.audiences.ImportAudience(r.Context(), r.URL.Query().Get("name"), p.actor, body)
	if err != nil {
		if berr := bodyError(body); berr != nil {
			return berr
		}
		return err
	}
	return writeJSON(w, http.StatusCreated, fixAudience(a))
}

// fixAudience returns a with [] rather than null for no zones.
func fixAudience(a Audience) Audience {
	if a.Zones == nil {
		a.Zones = []string{}
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a
}

// audienceList is the answer of GET /api/audiences.
type audienceList struct {
	Audiences []Audience `json:"audiences"`
}

func (s *Server) listAudiences(w http.ResponseWriter, r *http.Request, _ principal) error {
	as, err := s.audiences.Audiences(r.Context())
	if err != nil {
		return err
	}
	out := audienceList{Audiences: make([]Audience, 0, len(as))}
	for _, a := range as {
		out.Audiences = append(out.Audiences, fixAudience(a))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getAudience(w http.ResponseWriter, r *http.Request, _ principal) error {
	a, err := s.audiences.Audience(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, fixAudience(a))
}

func (s *Server) exportAudience(w http.ResponseWriter, r *http.Request, _ principal) error {
	id := r.PathValue("id")
	return s.streamCSV(w, r, id+".csv", func(w io.Writer) error {
		return s.audiences.ExportAudience(r.Context(), id, w)
	})
}

// deleteAudience deletes an audience and answers 204.
func (s *Server) deleteAudience(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.audiences.DeleteAudience(r.Context(), r.PathValue("id"), p.actor); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// streamCSV answers with the CSV file that write writes, as an attachment
// named filename. A failure before anything is sent is answered as usual;
// after that, the response is cut short so that the client sees an error
// rather than a partial file. The server's write timeout is replaced by a
// deadline that moves on as the file is written: a file takes as long as
// it is long.
func (s *Server) streamCSV(w http.ResponseWriter, r *http.Request, filename string, write func(io.Writer) error) error {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// Unsupported only by test recorders: ignored.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(exportWriteTimeout))
	cw := &countingWriter{w: w, moved: time.Now(), move: func(now time.Time) {
		_ = rc.SetWriteDeadline(now.Add(exportWriteTimeout))
	}}
	err := write(cw)
	if err == nil {
		return nil
	}
	if cw.n == 0 {
		h.Del("Content-Disposition")
		return err
	}
	if r.Context().Err() == nil {
		s.log.ErrorContext(r.Context(), "admin export failed after it began; response cut short",
			"path", r.URL.Path, "bytes_sent", cw.n, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// bodyError returns the error reading a request body, if there was one:
// the body too large (413) or cut short (400), rather than a bad file.
func bodyError(body *bodyReader) error {
	if body.err == nil {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(body.err, &tooLarge) {
		return body.err
	}
	return badRequest("request body: %v", body.err)
}
