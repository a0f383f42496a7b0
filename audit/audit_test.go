package audit

import (
	"context"
	"testing"
)

func TestNote(t *testing.T) {
	ctx := context.Background()
	if n, ok := NoteFrom(ctx); ok {
		t.Fatalf("NoteFrom(Background) = %+v, true; want none", n)
	}
	want := Note{Actor: "operator:1a2b3c4d", Action: "campaign.pause"}
	got, ok := NoteFrom(WithNote(ctx, want))
	if !ok || got != want {
		t.Fatalf("NoteFrom(WithNote(%+v)) = %+v, %v", want, got, ok)
	}
	// A context derived from it carries it too (the store sees what the
	// dispatcher passes on).
	child, cancel := context.WithCancel(WithNote(ctx, want))
	defer cancel()
	if got, ok := NoteFrom(child); !ok || got != want {
		t.Fatalf("NoteFrom(child) = %+v, %v", got, ok)
	}
}
