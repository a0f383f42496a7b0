package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The audiences page: upload a CSV file as a new audience (a multipart
// form, streamed into the store as it arrives, however large), list,
// export and delete them.

type audiencesPage struct {
	Audiences []Audience
	// Name is the Name field as it was sent; Errors the form's messages.
	Name   string
	Errors fieldErrors
}

func (s *Server) audiencesPage(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.showAudiences(w, r, p, http.StatusOK, audiencesPage{Errors: fieldErrors{}}, "")
}

func (s *Server) showAudiences(w http.ResponseWriter, r *http.Request, p principal, status int, pg audiencesPage, pageErr string) error {
	as, err := s.audiences.Audiences(r.Context())
	if err != nil {
		return err
	}
	for i := range as {
		as[i] = fixAudience(as[i])
	}
	pg.Audiences = as
	data := s.pageData(w, r, p, "Audiences", "audiences", pg)
	data.Error = pageErr
	s.render(w, r, status, "audiences", data)
	return nil
}

// maxFieldBytes bounds a form's text field read from a multipart body.
const maxFieldBytes = 4 << 10

// multipartFields reads the parts of r's multipart body in order: text
// fields into the map, until the file part named file, which it passes
// to read (and reads no further). It returns the error of read, or a
// field error on file when there is no file.
func multipartFields(r *http.Request, file string, fields map[string]string, read func(name string, part io.Reader) error) error {
	mr, err := r.MultipartReader()
	if err != nil {
		return badRequest("request body: want a multipart/form-data form: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return badRequest("%s: choose a file", file)
		}
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return err
			}
			return badRequest("request body: %v", err)
		}
		if part.FormName() == file {
			return read(part.FileName(), part)
		}
		b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return badRequest("request body: %v", err)
		}
		if len(b) > maxFieldBytes {
			return badRequest("%s: longer than %d bytes", part.FormName(), maxFieldBytes)
		}
		fields[part.FormName()] = string(b)
	}
}

// longUpload gives a request that uploads a big file up to total to be
// read and answered, in place of the server's read and write timeouts,
// as long as its body keeps arriving: a read of r.Body that waits longer
// than the import read timeout (Config.ImportReadTimeout) for the next
// bytes fails, so that a client that stops sending cannot hold an import
// (and the list import lock) until total. Unsupported only by test
// recorders: ignored.
func (s *Server) longUpload(w http.ResponseWriter, r *http.Request, total time.Duration) {
	rc := http.NewResponseController(w)
	end := time.Now().Add(total)
	_ = rc.SetWriteDeadline(end)
	_ = rc.SetReadDeadline(end)
	r.Body = &idleBody{ReadCloser: r.Body, rc: rc, idle: s.importIdle, end: end}
}

// idleBody moves the connection's read deadline to idle from now before
// each read of a request body, and back to end once the body fails or
// ends (then the server's own read of the next request takes over).
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	end  time.Time
}

func (b *idleBody) Read(p []byte) (int, error) {
	d := time.Now().Add(b.idle)
	if d.After(b.end) {
		d = b.end
	}
	_ = b.rc.SetReadDeadline(d)
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		_ = b.rc.SetReadDeadline(b.end)
	}
	return n, err
}

// uploadAnswer is the answer to the page's script.
type uploadAnswer struct {
	Location string `json:"location,omitempty"`
	Error    string `json:"error,omitempty"`
	Field    string `json:"field,omitempty"`
}

// uploadAudience imports the form's CSV file as a new audience named by
// its Name field, streaming the file into the store.
func (s *Server) uploadAudience(w http.ResponseWriter, r *http.Request, p principal) error {
	s.longUpload(w, r, audienceImportTimeout)
	fields := map[string]string{}
	var a Audience
	err := multipartFields(r, "csv", fields, func(filename string, part io.Reader) error {
		name := strings.TrimSpace(fields["name"])
		if name == "" {
			return badRequest("name: required")
		}
		if filename == "" {
			return badRequest("csv: choose a file")
		}
		body := &bodyReader{r: part}
		var err error
		if a, err = s.audiences.ImportAudience(r.Context(), name, p.actor, body); err != nil {
			if berr := bodyError(body); berr != nil {
				return berr
			}
			return err
		}
		return nil
	})
	pg := audiencesPage{Name: fields["name"], Errors: fieldErrors{}}
	if err != nil {
		status := s.formError(r, pg.Errors, err, [][2]string{{"name", "name: "}, {"csv", "csv: "}, {"csv", "line "}, {"csv", "request body"}})
		if wantsJSON(r) {
			field, msg := "", pg.Errors[""]
			for f, m := range pg.Errors {
				field, msg = f, m
			}
			return writeJSON(w, status, uploadAnswer{Error: msg, Field: field})
		}
		return s.showAudiences(w, r, p, status, pg, "")
	}
	msg := fmt.Sprintf("Imported %d recipients (%d iOS, %d Android) as audience %s.", a.Recipients, a.IOS, a.Android, a.Name)
	if wantsJSON(r) {
		http.SetCookie(w, flash(r, msg))
		return writeJSON(w, http.StatusCreated, uploadAnswer{Location: "/audiences"})
	}
	redirectFlash(w, r, "/audiences", msg)
	return nil
}

// deleteAudienceForm deletes an audience once confirmed.
func (s *Server) deleteAudienceForm(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	a, err := s.audiences.Audience(r.Context(), id)
	if err != nil {
		return err
	}
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, r, http.StatusOK, "confirm", s.pageData(w, r, p, "Delete "+a.Name, "audiences", confirmPage{
			Question: fmt.Sprintf("Delete audience %s (%d recipients)?", a.Name, a.Recipients),
			Detail:   "Campaigns that are over keep their counters; one that still needs it stops the deletion.",
			Action:   "/audiences/" + url.PathEscape(id) + "/delete", Button: "Delete audience", Back: "/audiences", BackText: "Keep it",
		}))
		return nil
	}
	if err := s.audiences.DeleteAudience(r.Context(), id, p.actor); err != nil {
		status, msg := errorStatus(err)
		if status == http.StatusInternalServerError {
			return err
		}
		return s.showAudiences(w, r, p, status, audiencesPage{Errors: fieldErrors{}}, msg)
	}
	redirectFlash(w, r, "/audiences", "Deleted audience "+a.Name+".")
	return nil
}
