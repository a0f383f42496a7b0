package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// User is an account of the admin console. The store keeps what the admin
// module gives it: the role, the password's bcrypt hash (never the
// password) and the disabled flag.
type User struct {
	Name string
	// Role is viewer, operator or admin.
	Role string
	// PasswordHash is a bcrypt hash; it never leaves pushd.
	PasswordHash string
	Disabled     bool
	// CreatedAt, UpdatedAt and PasswordChangedAt are stamped by the
	// store's clock.
	CreatedAt, UpdatedAt, PasswordChangedAt time.Time
}

// UserChange is a change to a user; nil and empty fields stay as they
// are.
type UserChange struct {
	Role         *string
	PasswordHash string
	Disabled     *bool
	// KeepSession is the id hash of the session that a password change
	// leaves open (the caller's own, when users change their own
	// password); every other session of the user ends.
	KeepSession string
}

// Session is a signed-in browser.
type Session struct {
	// IDHash is the hex SHA-256 of the session cookie's value: the store
	// never holds a value that signs anyone in.
	IDHash string
	User   string
	// CreatedAt and LastSeen are the admin module's clock: when the user
	// signed in and when the session was last used (to the second).
	CreatedAt, LastSeen time.Time
	// Address is the client's address at sign-in.
	Address string
}

// userAudit is a user as the audit log shows it: without the hash.
type userAudit struct {
	Name              string    `json:"name"`
	Role              string    `json:"role"`
	Disabled          bool      `json:"disabled"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

func auditOfUser(u User) userAudit {
	return userAudit{Name: u.Name, Role: u.Role, Disabled: u.Disabled,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, PasswordChangedAt: u.PasswordChangedAt}
}

// SQL of users and sessions.
const (
	userColumns   = `name, role, password_hash, disabled, created_at, updated_at, password_changed_at`
	sqlUser       = `SELECT ` + userColumns + ` FROM users WHERE name = $1`
	sqlUsers      = `SELECT ` + userColumns + ` FROM users ORDER BY name`
	sqlInsertUser = `INSERT INTO users (` + userColumns + `) VALUES ($1, $2, $3, $4, $5, $5, $5)`
	sqlUpdateUser = `UPDATE users SET role = $2, password_hash = $3, disabled = $4, updated_at = $5,
    password_changed_at = $6 WHERE name = $1`

	sqlInsertSession = `INSERT INTO sessions (id_hash, user_name, created_at, last_seen, address)
VALUES ($1, $2, $3, $4, $5)`
	sqlSessionUser = `SELECT s.id_hash, s.user_name, s.created_at, s.last_seen, s.address,
    u.name, u.role, u.password_hash, u.disabled, u.created_at, u.updated_at, u.password_changed_at
FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.id_hash = $1`
	sqlTouchSession    = `UPDATE sessions SET last_seen = $2 WHERE id_hash = $1 AND last_seen < $2`
	sqlDeleteSession   = `DELETE FROM sessions WHERE id_hash = $1 RETURNING user_name, address`
	sqlEndUserSessions = `DELETE FROM sessions WHERE user_name = $1 AND id_hash <> $2`
	sqlPruneSessions   = `DELETE FROM sessions WHERE last_seen < $1 OR created_at < $2`
)

// CreateUser stores a new user and audits user.create by actor. A name
// already taken is a conflict (dispatcher.ErrConflict).
func (s *Store) CreateUser(ctx context.Context, u User, actor string) (User, error) {
	if u.Name == "" || u.PasswordHash == "" {
		return User{}, errors.New("create user: want a name and a password hash")
	}
	var out User
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := getUser(ctx, tx, u.Name)
		switch {
		case err == nil:
			return fmt.Errorf("user %q exists: %w", u.Name, dispatcher.ErrConflict)
		case !errors.Is(err, dispatcher.ErrNotFound):
			return err
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, sqlInsertUser, u.Name, u.Role, u.PasswordHash, boolInt(u.Disabled), toMillis(now)); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if out, err = getUser(ctx, tx, u.Name); err != nil {
			return err
		}
		return auditTx(ctx, tx, now, actor, "user.create", u.Name, nil, auditOfUser(out))
	})
	if err != nil {
		return User{}, fmt.Errorf("create user %q: %w", u.Name, err)
	}
	return out, nil
}

// UpdateUser applies ch to the user called name and audits user.update by
// actor, in one transaction. Disabling the user ends all of its sessions;
// a new password ends all but ch.KeepSession. An unknown user is
// dispatcher.ErrNotFound.
func (s *Store) UpdateUser(ctx context.Context, name string, ch UserChange, actor string) (before, after User, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		cur, err := getUser(ctx, tx, name)
		if err != nil {
			return err
		}
		now := s.now()
		next := cur
		if ch.Role != nil {
			next.Role = *ch.Role
		}
		if ch.Disabled != nil {
			next.Disabled = *ch.Disabled
		}
		if ch.PasswordHash != "" {
			next.PasswordHash, next.PasswordChangedAt = ch.PasswordHash, now
		}
		if _, err := tx.ExecContext(ctx, sqlUpdateUser, name, next.Role, next.PasswordHash,
			boolInt(next.Disabled), toMillis(now), toMillis(next.PasswordChangedAt)); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		keep := ch.KeepSession
		if next.Disabled {
			keep = ""
		}
		if next.Disabled || ch.PasswordHash != "" {
			if _, err := tx.ExecContext(ctx, sqlEndUserSessions, name, keep); err != nil {
				return fmt.Errorf("end sessions: %w", err)
			}
		}
		if after, err = getUser(ctx, tx, name); err != nil {
			return err
		}
		before = cur
		return auditTx(ctx, tx, now, actor, "user.update", name, auditOfUser(cur), auditOfUser(after))
	})
	if err != nil {
		return User{}, User{}, fmt.Errorf("update user %q: %w", name, err)
	}
	return before, after, nil
}

// User returns the user called name; dispatcher.ErrNotFound if there is
// none.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	return getUser(ctx, s.r, name)
}

// Users returns every user, by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.r.QueryContext(ctx, sqlUsers)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return out, nil
}

func getUser(ctx context.Context, q querier, name string) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, sqlUser, name))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %q: %w", name, dispatcher.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

func scanUser(row interface{ Scan(dest ...any) error }) (User, error) {
	var u User
	var disabled, created, updated, changed int64
	if err := row.Scan(&u.Name, &u.Role, &u.PasswordHash, &disabled, &created, &updated, &changed); err != nil {
		return User{}, err
	}
	u.Disabled = disabled != 0
	u.CreatedAt, u.UpdatedAt, u.PasswordChangedAt = fromMillis(created), fromMillis(updated), fromMillis(changed)
	return u, nil
}

// sessionAudit is what the audit log records of a sign-in or sign-out: a
// short prefix of the session's id hash, to pair them, and the address.
type sessionAudit struct {
	Session string `json:"session"`
	Address string `json:"address,omitempty"`
}

func auditOfSession(idHash, address string) sessionAudit {
	return sessionAudit{Session: idHash[:min(8, len(idHash))], Address: address}
}

// CreateSession stores a new session of an existing user and audits
// auth.login by actor.
func (s *Store) CreateSession(ctx context.Context, sess Session, actor string) error {
	if len(sess.IDHash) != 2*sha256.Size {
		return errors.New("create session: want a hex SHA-256 id hash")
	}
	if _, err := hex.DecodeString(sess.IDHash); err != nil {
		return errors.New("create session: want a hex SHA-256 id hash")
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := getUser(ctx, tx, sess.User); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, sqlInsertSession, sess.IDHash, sess.User,
			toMillis(sess.CreatedAt), toMillis(sess.LastSeen), sess.Address); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return auditTx(ctx, tx, sess.CreatedAt, actor, "auth.login", sess.User, nil, auditOfSession(sess.IDHash, sess.Address))
	})
	if err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Session returns the session whose id hash is idHash and its user, or
// dispatcher.ErrNotFound. It does not check the session's age: that is
// the caller's policy.
func (s *Store) Session(ctx context.Context, idHash string) (Session, User, error) {
	var sess Session
	var created, seen int64
	row := s.r.QueryRowContext(ctx, sqlSessionUser, idHash)
	u, err := scanUser(scanPrefix{row: row, dest: []any{&sess.IDHash, &sess.User, &created, &seen, &sess.Address}})
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, User{}, fmt.Errorf("session: %w", dispatcher.ErrNotFound)
	}
	if err != nil {
		return Session{}, User{}, fmt.Errorf("session: %w", err)
	}
	sess.CreatedAt, sess.LastSeen = fromMillis(created), fromMillis(seen)
	return sess, u, nil
}

// scanPrefix scans dest, then what its caller asks for, from one row.
type scanPrefix struct {
	row  *sql.Row
	dest []any
}

func (p scanPrefix) Scan(dest ...any) error { return p.row.Scan(append(p.dest, dest...)...) }

// TouchSession records that the session was used at at (if that is later
// than it was last seen).
func (s *Store) TouchSession(ctx context.Context, idHash string, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqlTouchSession, idHash, toMillis(at))
		return err
	})
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// EndSession deletes the session whose id hash is idHash. When action is
// not empty (auth.logout, or auth.session_expired), it is audited by
// actor at at, in the same transaction. A session that is already gone
// is not an error, and is not audited.
func (s *Store) EndSession(ctx context.Context, idHash, actor, action string, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		var user, addr string
		err := tx.QueryRowContext(ctx, sqlDeleteSession, idHash).Scan(&user, &addr)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errUnchanged
		case err != nil:
			return err
		case action == "":
			return nil
		}
		return auditTx(ctx, tx, at, actor, action, user, auditOfSession(idHash, addr), nil)
	})
	if err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// PruneSessions deletes the sessions last used before idleBefore or
// created before createdBefore, and returns how many.
func (s *Store) PruneSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, sqlPruneSessions, toMillis(idleBefore), toMillis(createdBefore))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	return int(n), nil
}
