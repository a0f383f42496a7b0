package admin

import (
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
)

// The users page, for admins.

// usersPage lists who may use the console. Today that is the bearer
// tokens of admin.tokens_file, by role and actor name (never the token).
func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, p principal) error {
	type tokenRow struct{ Role, Actor string }
	var rows []tokenRow
	if s.tokens != nil {
		for _, e := range s.tokens.current() {
			rows = append(rows, tokenRow{Role: e.role.String(), Actor: e.role.String() + ":" + hex.EncodeToString(e.sum[:4])})
		}
	}
	slices.SortFunc(rows, func(a, b tokenRow) int { return strings.Compare(a.Actor, b.Actor) })
	s.render(w, r, http.StatusOK, "users", s.pageData(w, r, p, "Users", "users", struct {
		Tokens []tokenRow
		File   bool
	}{rows, s.tokens != nil}))
	return nil
}
