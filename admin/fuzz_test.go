package admin

import (
	"strings"
	"testing"
)

// FuzzParseTokens checks the tokens file parser on any input: it never
// panics; what it accepts has one entry per token line, each token strong
// enough; and what it refuses is refused without echoing a token.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("viewer:" + viewerToken + "\noperator:" + operatorToken + "\n"))
	f.Add([]byte("# only a comment\n\n"))
	f.Add([]byte("admin:short\n"))
	f.Add([]byte("viewer:" + viewerToken + "\r\nroot:" + adminToken))
	f.Add([]byte("admin:" + strings.Repeat("0", 32)))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseTokens(data)
		lines := 0
		for line := range strings.Lines(string(data)) {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			lines++
			if err == nil {
				_, tok, _ := strings.Cut(line, ":")
				if tok = strings.TrimSpace(tok); checkStrength(tok) != nil {
					t.Fatalf("accepted a weak token in line %q", line)
				}
			} else if _, tok, ok := strings.Cut(line, ":"); ok && echoes(err.Error(), strings.TrimSpace(tok)) {
				t.Fatalf("error %q echoes a token", err)
			}
		}
		if err == nil && len(entries) != lines {
			t.Fatalf("%d entries from %d token lines", len(entries), lines)
		}
	})
}

// echoes reports whether msg contains tok, for tokens that cannot be
// words of the parser's own messages: 22 characters or more without a
// space (its longest word is 10).
func echoes(msg, tok string) bool {
	return len(tok) >= minOtherTokenLen && !strings.ContainsAny(tok, " \t") && strings.Contains(msg, tok)
}
