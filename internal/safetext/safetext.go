// Package safetext checks the text of names people read back: list
// entries, campaign and batch ids. Such text must be valid UTF-8 (or the
// JSON API can neither show nor remove it) and hold no C0 or C1 control
// characters and no bidirectional formatting characters (U+202E and its
// kin make "gpj.exe" read as "exe.jpg" in a console or a log).
package safetext

import (
	"fmt"
	"unicode/utf8"
)

// Check returns an error naming the first problem of s, or nil.
func Check(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for i, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			return fmt.Errorf("control character U+%04X at byte %d", r, i)
		case r >= 0x80 && r <= 0x9f:
			return fmt.Errorf("C1 control character U+%04X at byte %d", r, i)
		case r == utf8.RuneError:
			// What a JSON decoder makes of invalid UTF-8.
			return fmt.Errorf("replacement character U+FFFD at byte %d (invalid UTF-8 upstream)", i)
		case bidi(r):
			return fmt.Errorf("bidirectional formatting character U+%04X at byte %d", r, i)
		}
	}
	return nil
}

// bidi reports the explicit bidirectional formatting characters: the
// marks, embeddings, overrides and isolates of Unicode's bidi algorithm.
func bidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
