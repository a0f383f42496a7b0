package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pushd/pushd/lists"
)

// The blacklist and whitelist pages: search, add, remove, import and
// export, each the same operation as its API route.

// listSearcher finds the entries of a list whose value starts with a
// prefix. The store implements it; with a ListStore that does not, the
// list pages have no search.
type listSearcher interface {
	SearchListEntries(ctx context.Context, list lists.Name, prefix string, limit int) ([]lists.Entry, error)
}

// listPageSize is how many entries a list page shows.
const listPageSize = 100

type listPage struct {
	List  lists.Name
	Other lists.Name
	Count int
	// Query is the search; CanSearch whether there is one.
	Query     string
	CanSearch bool
	Entries   []lists.Entry
	// Next is the cursor of the next page, "" on the last; Searched
	// says the entries are search results (the first listPageSize).
	Next     string
	Searched bool
	// Add is the add form as sent, with its messages.
	Add    lists.Entry
	Errors fieldErrors
}

func (s *Server) listPage(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	return s.showList(w, r, p, list, http.StatusOK, listPage{Errors: fieldErrors{}}, "")
}

// showList renders the page of list with its entries: those after the
// cursor in the query's after, or those the query's q finds.
func (s *Server) showList(w http.ResponseWriter, r *http.Request, p principal, list lists.Name, status int, pg listPage, pageErr string) error {
	ctx := r.Context()
	pg.List, pg.Other = list, lists.Whitelist
	if list == lists.Whitelist {
		pg.Other = lists.Blacklist
	}
	var err error
	if pg.Count, err = s.lists.CountListEntries(ctx, list); err != nil {
		return err
	}
	searcher, canSearch := s.lists.(listSearcher)
	pg.CanSearch = canSearch
	q := r.URL.Query()
	pg.Query = strings.TrimSpace(q.Get("q"))
	switch {
	case pg.Query != "" && canSearch:
		pg.Searched = true
		pg.Entries, err = searcher.SearchListEntries(ctx, list, pg.Query, listPageSize)
	default:
		var after lists.Key
		if v := q.Get("after"); v != "" {
			if after, err = decodeCursor(v); err != nil {
				return badRequest("after: not a cursor from the previous page's link")
			}
		}
		pg.Entries, err = s.lists.ListEntries(ctx, list, after, listPageSize)
		if err == nil && len(pg.Entries) == listPageSize {
			pg.Next = encodeCursor(pg.Entries[len(pg.Entries)-1].Key())
		}
	}
	if err != nil {
		return err
	}
	title := strings.ToUpper(string(list[:1])) + string(list[1:])
	data := s.pageData(w, r, p, title, "lists", pg)
	data.Error = pageErr
	s.render(w, r, status, "list", data)
	return nil
}

// importFields map the messages of an import to the import form's file
// field.
var importFields = [][2]string{{"csv", "csv: "}, {"csv", "line "}, {"csv", "invalid list entry"}, {"csv", "request body"}}

func (s *Server) addListForm(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	e := lists.Entry{
		List: list, Kind: lists.Kind(r.PostFormValue("kind")), Platform: r.PostFormValue("platform"),
		Value: strings.TrimSpace(r.PostFormValue("value")), Reason: strings.TrimSpace(r.PostFormValue("reason")),
	}
	if e.Kind == lists.User {
		e.Platform = "" // the form always sends one
	}
	pg := listPage{Add: e, Errors: fieldErrors{}}
	if err := e.Validate(); err != nil {
		pg.Errors.add("value", err.Error())
		return s.showList(w, r, p, list, http.StatusBadRequest, pg, "")
	}
	res, err := s.addEntries(r, p, list, []lists.Entry{e})
	if err != nil {
		return s.showList(w, r, p, list, s.formError(r, pg.Errors, err, nil), pg, "")
	}
	msg := "Added " + e.Value + "."
	if res.Updated > 0 {
		msg = "Updated the reason of " + e.Value + "."
	}
	redirectFlash(w, r, "/lists/"+string(list), msg)
	return nil
}

func (s *Server) removeListForm(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	e := lists.Entry{List: list, Kind: lists.Kind(r.PostFormValue("kind")), Platform: r.PostFormValue("platform"), Value: r.PostFormValue("value")}
	if err := e.Validate(); err != nil {
		return badRequest("entry: %v", err)
	}
	res, err := s.removeEntries(r, p, list, []lists.Key{e.Key()})
	if err != nil {
		return err
	}
	msg := "Removed " + e.Value + "."
	if res.Removed == 0 {
		msg = e.Value + " was not in the " + string(list) + "."
	}
	back := "/lists/" + string(list)
	if q := r.PostFormValue("q"); q != "" {
		back += "?q=" + url.QueryEscape(q)
	}
	redirectFlash(w, r, back, msg)
	return nil
}

// importListForm imports the form's CSV file into list: added to it, or
// replacing it with the Replace box ticked.
func (s *Server) importListForm(w http.ResponseWriter, r *http.Request, p principal, list lists.Name) error {
	s.longUpload(w, r, importTimeout)
	fields := map[string]string{}
	var res importResult
	var replace bool
	err := multipartFields(r, "csv", fields, func(filename string, part io.Reader) error {
		if filename == "" {
			return badRequest("csv: choose a file")
		}
		replace = fields["replace"] != ""
		var err error
		res, err = s.importEntries(r, p, list, part, replace)
		return err
	})
	if err != nil {
		pg := listPage{Errors: fieldErrors{}}
		return s.showList(w, r, p, list, s.formError(r, pg.Errors, err, importFields), pg, "")
	}
	msg := "Imported " + strconv.Itoa(res.Imported) + " entries."
	if replace {
		msg = fmt.Sprintf("Replaced the %s with %d entries.", list, res.Imported)
	}
	redirectFlash(w, r, "/lists/"+string(list), msg)
	return nil
}
