// Package audit carries the note of a change, who makes it and what the
// audit log calls it, from the admin API, where the request is
// authenticated, through the dispatcher to the store, which writes the
// change's audit record in the change's own transaction. A change whose
// record cannot be written is rolled back with it, so no change stands
// unrecorded.
//
// It is not the audit log: the store keeps that and the admin module
// serves it. Only the store's operator changes (lists, rate limits,
// campaign control) read the note; other writes ignore it.
package audit

import "context"

// Note says who makes a change and what the audit log calls it. The store
// adds the rest of the record: when, the object changed (target), and the
// object before and after, read and written in the same transaction.
type Note struct {
	// Actor is who makes the change, as the audit log names them (for
	// example "operator:1a2b3c4d", a token's role and fingerprint).
	Actor string
	// Action names the change, for example "campaign.pause".
	Action string
}

type noteKey struct{}

// WithNote returns a copy of ctx that carries n. A store change made with
// it writes n's record in its transaction, or fails.
func WithNote(ctx context.Context, n Note) context.Context {
	return context.WithValue(ctx, noteKey{}, n)
}

// NoteFrom returns the note ctx carries, if any.
func NoteFrom(ctx context.Context) (Note, bool) {
	n, ok := ctx.Value(noteKey{}).(Note)
	return n, ok
}
