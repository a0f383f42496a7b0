package safetext

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		s, want string
	}{
		{"spring-sale/000017", ""},
		{"세일 🎉 Ünïcödé", ""},
		{"", ""},
		{"bad\xffutf8", "not valid UTF-8"},
		{"tab\there", "control character U+0009 at byte 3"},
		{"nul\x00", "control character U+0000"},
		{"del\x7f", "control character U+007F"},
		{"next-line\u0085", "C1 control character U+0085"},
		{"invoice-\u202Egpj.exe", "bidirectional formatting character U+202E at byte 8"},
		{"isolate\u2066x\u2069", "bidirectional formatting character U+2066"},
		{"mark\u200F", "bidirectional formatting character U+200F"},
		{"decoded\uFFFD", "replacement character U+FFFD at byte 7"},
	} {
		err := Check(tc.s)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%q) = %v, want %q", tc.s, err, tc.want)
		}
	}
}
