package admin

import (
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
)

// The users page, for admins: the console's accounts (add one, change a
// role or a password, disable or enable), each the same operation as its
// API route, and the bearer tokens of admin.tokens_file.

// usersPage is what the users page shows.
type usersPage struct {
	// Accounts says whether a UserStore is configured.
	Accounts bool
	Users    []userView
	// Add is the add form as sent, without its password, with its
	// messages.
	Add    createUserRequest
	Errors fieldErrors
	Roles  []string
	Tokens []tokenRow
	// File says whether admin.tokens_file is configured.
	File bool
}

// tokenRow is a bearer token as the users page shows it: never the token.
type tokenRow struct{ Role, Actor string }

// addUserFields map the messages of an add to the add form's fields.
var addUserFields = [][2]string{{"name", "name: "}, {"name", "user "}, {"role", "role: "}, {"password", "password: "}}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.showUsers(w, r, p, http.StatusOK, usersPage{Errors: fieldErrors{}}, "")
}

// showUsers renders the users page with pg's form and messages.
func (s *Server) showUsers(w http.ResponseWriter, r *http.Request, p principal, status int, pg usersPage, pageErr string) error {
	pg.Roles = []string{roleViewer.String(), roleOperator.String(), roleAdmin.String()}
	if pg.Add.Role == "" {
		pg.Add.Role = roleOperator.String()
	}
	if s.users != nil {
		us, err := s.users.Users(r.Context())
		if err != nil {
			return err
		}
		pg.Accounts = true
		for _, u := range us {
			pg.Users = append(pg.Users, viewOfUser(u))
		}
	}
	if s.tokens != nil {
		pg.File = true
		for _, e := range s.tokens.current() {
			pg.Tokens = append(pg.Tokens, tokenRow{Role: e.role.String(), Actor: e.role.String() + ":" + hex.EncodeToString(e.sum[:4])})
		}
		slices.SortFunc(pg.Tokens, func(a, b tokenRow) int { return strings.Compare(a.Actor, b.Actor) })
	}
	data := s.pageData(w, r, p, "Users", "users", pg)
	data.Error = pageErr
	s.render(w, r, status, "users", data)
	return nil
}

// addUserForm answers the add form: POST /users.
func (s *Server) addUserForm(w http.ResponseWriter, r *http.Request, p principal) error {
	req := createUserRequest{
		Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role"), Password: r.PostFormValue("password"),
	}
	u, err := s.addUser(r.Context(), p, req)
	if err != nil {
		req.Password = ""
		pg := usersPage{Add: req, Errors: fieldErrors{}}
		return s.showUsers(w, r, p, s.formError(r, pg.Errors, err, addUserFields), pg, "")
	}
	redirectFlash(w, r, "/users", "Added "+u.Role+" "+u.Name+".")
	return nil
}

// userForm returns the handler of a form that changes the user of the
// path with the request change makes of the form; done is the flash
// message of a change made to name.
func (s *Server) userForm(change func(r *http.Request) updateUserRequest, done func(name string) string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		name := r.PathValue("name")
		if _, err := s.changeUser(r.Context(), p, name, change(r)); err != nil {
			status, msg := errorStatus(err)
			if status == http.StatusInternalServerError {
				return err
			}
			return s.showUsers(w, r, p, status, usersPage{Errors: fieldErrors{}}, name+": "+msg)
		}
		redirectFlash(w, r, "/users", done(name))
		return nil
	}
}

// userForms are the forms of a user's row, by the last segment of their
// path.
func (s *Server) userForms() map[string]apiHandler {
	yes, no := true, false
	return map[string]apiHandler{
		"role": s.userForm(func(r *http.Request) updateUserRequest {
			role := r.PostFormValue("role")
			return updateUserRequest{Role: &role}
		}, func(name string) string { return "Changed the role of " + name + "." }),
		"password": s.userForm(func(r *http.Request) updateUserRequest {
			pw := r.PostFormValue("password")
			return updateUserRequest{Password: &pw}
		}, func(name string) string { return "Changed the password of " + name + "; their other sessions ended." }),
		"disable": s.userForm(func(*http.Request) updateUserRequest { return updateUserRequest{Disabled: &yes} },
			func(name string) string { return "Disabled " + name + "; their sessions ended." }),
		"enable": s.userForm(func(*http.Request) updateUserRequest { return updateUserRequest{Disabled: &no} },
			func(name string) string { return "Enabled " + name + "." }),
	}
}
