package admin

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// User is an account of the console, as the UserStore keeps it.
type User struct {
	Name string
	// Role is viewer, operator or admin.
	Role string
	// PasswordHash is the password's bcrypt hash. It is never answered.
	PasswordHash string
	Disabled     bool
	// CreatedAt, UpdatedAt and PasswordChangedAt are stamped by the store.
	CreatedAt, UpdatedAt, PasswordChangedAt time.Time
}

// UserChange is a change to a user; nil and empty fields stay as they are.
type UserChange struct {
	Role         *string
	PasswordHash string
	Disabled     *bool
	// KeepSession is the id hash of the session a password change leaves
	// open: the caller's, when users change their own password. Every
	// other session of the user ends.
	KeepSession string
}

// Session is a signed-in browser.
type Session struct {
	// IDHash is the hex SHA-256 of the cookie's value.
	IDHash string
	User   string
	// CreatedAt and LastSeen are the admin module's clock.
	CreatedAt, LastSeen time.Time
	// Address is the client's address at sign-in.
	Address string
}

// UserStore keeps the console's users and their sessions, so that
// sessions survive a restart and work on every instance. The store
// implements it (through an adapter in cmd/pushd), auditing user.create,
// user.update, auth.login and auth.logout in each change's transaction.
// An unknown user or session is an error wrapping dispatcher.ErrNotFound;
// a name taken, dispatcher.ErrConflict.
type UserStore interface {
	CreateUser(ctx context.Context, u User, actor string) (User, error)
	// UpdateUser applies ch. Disabling a user ends all its sessions, a new
	// password all but ch.KeepSession.
	UpdateUser(ctx context.Context, name string, ch UserChange, actor string) (before, after User, err error)
	User(ctx context.Context, name string) (User, error)
	Users(ctx context.Context) ([]User, error)

	// CreateSession stores a session and audits auth.login by actor.
	CreateSession(ctx context.Context, sess Session, actor string) error
	// Session returns a session and its user, whatever their age.
	Session(ctx context.Context, idHash string) (Session, User, error)
	// TouchSession records a use of the session at at.
	TouchSession(ctx context.Context, idHash string, at time.Time) error
	// EndSession deletes a session, and audits action by actor if action
	// is not empty and the session existed.
	EndSession(ctx context.Context, idHash, actor, action string, at time.Time) error
}

var errNoUsers = &clientError{kindUnavailable, "accounts not configured"}

// Password rules: at least 12 characters, and at most 72 bytes, the most
// bcrypt reads (it would ignore the rest).
const (
	minPasswordChars = 12
	maxPasswordBytes = 72
)

func checkPassword(pw string) error {
	switch n := utf8.RuneCountInString(pw); {
	case !utf8.ValidString(pw):
		return badRequest("password: not valid UTF-8")
	case n < minPasswordChars:
		return badRequest("password: at least %d characters, got %d", minPasswordChars, n)
	case len(pw) > maxPasswordBytes:
		return badRequest("password: at most %d bytes (bcrypt's limit), got %d", maxPasswordBytes, len(pw))
	}
	return nil
}

// userName is what a user name may be: lower case, so that names differ
// by more than case; sign-in folds what is typed to lower case.
var userName = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

func checkUserName(name string) error {
	if !userName.MatchString(name) {
		return badRequest("name: 1 to 64 lower-case letters, digits and . _ @ -, starting with a letter or digit; got %q", name)
	}
	return nil
}

func checkRole(r string) error {
	if parseRole(r) == roleNone {
		return badRequest("role: want viewer, operator or admin, got %q", r)
	}
	return nil
}

// userView is a user as the API answers it: never the hash.
type userView struct {
	Name              string    `json:"name"`
	Role              string    `json:"role"`
	Disabled          bool      `json:"disabled"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

func viewOfUser(u User) userView {
	return userView{Name: u.Name, Role: u.Role, Disabled: u.Disabled,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, PasswordChangedAt: u.PasswordChangedAt}
}

// usersRoute returns h if a UserStore is configured, a 503 otherwise.
func (s *Server) usersRoute(h apiHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		if s.users == nil {
			return errNoUsers
		}
		return h(w, r, p)
	}
}

// createUserRequest is the body of POST /api/users.
type createUserRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var req createUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	u, err := s.addUser(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, viewOfUser(u))
}

// addUser checks and creates the user of req, by p: the API and the
// users page both use it.
func (s *Server) addUser(ctx context.Context, p principal, req createUserRequest) (User, error) {
	if err := checkUserName(req.Name); err != nil {
		return User{}, err
	}
	if err := checkRole(req.Role); err != nil {
		return User{}, err
	}
	if err := checkPassword(req.Password); err != nil {
		return User{}, err
	}
	hash, err := s.hashPassword(ctx, req.Password)
	if err != nil {
		return User{}, err
	}
	return s.users.CreateUser(ctx, User{Name: req.Name, Role: req.Role, PasswordHash: hash}, p.actor)
}

// updateUserRequest is the body of PUT /api/users/{name}: any of its
// fields, at least one.
type updateUserRequest struct {
	Role     *string `json:"role"`
	Password *string `json:"password"`
	Disabled *bool   `json:"disabled"`
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var req updateUserRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	after, err := s.changeUser(r.Context(), p, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewOfUser(after))
}

// changeUser checks and makes the change req to user name, by p: the API
// and the users page both use it. A user who changes their own password
// keeps the session they do it from.
func (s *Server) changeUser(ctx context.Context, p principal, name string, req updateUserRequest) (User, error) {
	if req.Role == nil && req.Password == nil && req.Disabled == nil {
		return User{}, badRequest("request body: give role, password or disabled")
	}
	if p.name == name && ((req.Disabled != nil && *req.Disabled) || (req.Role != nil && *req.Role != "admin")) {
		// An admin locking themselves out of the users page: another
		// admin, or an admin token, must do it.
		return User{}, forbidden("you cannot disable your own account or take away your own admin role; another admin can")
	}
	ch := UserChange{Role: req.Role, Disabled: req.Disabled}
	if req.Role != nil {
		if err := checkRole(*req.Role); err != nil {
			return User{}, err
		}
	}
	if req.Password != nil {
		if err := checkPassword(*req.Password); err != nil {
			return User{}, err
		}
		hash, err := s.hashPassword(ctx, *req.Password)
		if err != nil {
			return User{}, err
		}
		ch.PasswordHash = hash
		if p.name == name {
			ch.KeepSession = p.session
		}
	}
	_, after, err := s.users.UpdateUser(ctx, name, ch, p.actor)
	return after, err
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, _ principal) error {
	us, err := s.users.Users(r.Context())
	if err != nil {
		return err
	}
	out := make([]userView, len(us))
	for i, u := range us {
		out[i] = viewOfUser(u)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"users": out})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, _ principal) error {
	u, err := s.users.User(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewOfUser(u))
}

// hashPassword returns pw's bcrypt hash. Like comparePassword, it waits
// for a turn: bcrypt takes tens of milliseconds of CPU by design, and no
// more than one hash per core runs at once, so that a burst of sign-ins
// cannot take the CPU from sending.
func (s *Server) hashPassword(ctx context.Context, pw string) (string, error) {
	if err := s.acquireHashing(ctx); err != nil {
		return "", err
	}
	defer func() { <-s.hashing }()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), s.passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// comparePassword reports whether pw matches hash.
func (s *Server) comparePassword(ctx context.Context, hash, pw string) (bool, error) {
	if err := s.acquireHashing(ctx); err != nil {
		return false, err
	}
	defer func() { <-s.hashing }()
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil, nil
}

func (s *Server) acquireHashing(ctx context.Context) error {
	select {
	case s.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to hash a password: %w", context.Cause(ctx))
	}
}
