package admin

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The audit log page, with filters and paging.

// auditPageSize is how many records the audit log page shows at once.
const auditPageSize = 50

type auditPageData struct {
	// The filters as given; Since and Until are wall times in the
	// operator's zone.
	Actor, Action, Target, Since, Until string
	Errors                              fieldErrors
	Entries                             []auditRow
	// Older is the link to the next page, "" on the last.
	Older string
}

type auditRow struct {
	AuditRecord
	// Link is the page of the target, if it has one.
	Link string
}

// wallLayouts are the forms of a datetime-local field.
var wallLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05"}

// parseWall reads a datetime-local field as a time in loc.
func parseWall(v string, loc *time.Location) (time.Time, bool) {
	for _, l := range wallLayouts {
		if t, err := time.ParseInLocation(l, v, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, p principal) error {
	if s.auditLog == nil {
		return errNoAuditLog
	}
	v := r.URL.Query()
	loc := s.displayZone(r)
	pg := auditPageData{
		Actor: strings.TrimSpace(v.Get("actor")), Action: strings.TrimSpace(v.Get("action")), Target: strings.TrimSpace(v.Get("target")),
		Since: v.Get("since"), Until: v.Get("until"), Errors: fieldErrors{},
	}
	q := AuditQuery{Actor: pg.Actor, Action: pg.Action, Target: pg.Target, Limit: auditPageSize}
	for _, f := range []struct {
		name, val string
		dst       *time.Time
	}{{"since", pg.Since, &q.Since}, {"until", pg.Until, &q.Until}} {
		if f.val == "" {
			continue
		}
		t, ok := parseWall(f.val, loc)
		if !ok {
			pg.Errors.add(f.name, "A date and time such as 2026-12-24T09:00, in "+loc.String()+".")
			continue
		}
		*f.dst = t
	}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return badRequest("before: not a link from the previous page")
		}
		q.Before = n
	}
	status := http.StatusOK
	if len(pg.Errors) > 0 {
		status = http.StatusBadRequest
	} else {
		recs, err := s.auditLog.AuditEntries(r.Context(), q)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			row := auditRow{AuditRecord: rec}
			switch {
			case strings.HasPrefix(rec.Action, "campaign."):
				row.Link = "/campaign/" + url.PathEscape(rec.Target)
			case strings.HasPrefix(rec.Action, "list."):
				row.Link = "/lists/" + url.PathEscape(rec.Target)
			}
			pg.Entries = append(pg.Entries, row)
		}
		if len(recs) == auditPageSize {
			next := url.Values{}
			for k, vs := range v {
				next[k] = vs
			}
			next.Set("before", strconv.FormatInt(recs[len(recs)-1].ID, 10))
			pg.Older = "/audit?" + next.Encode()
		}
	}
	s.render(w, r, status, "audit", s.pageData(w, r, p, "Audit log", "audit", pg))
	return nil
}
