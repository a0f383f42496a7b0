package lists

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadCSV(t *testing.T) {
	const header = "kind,value,platform,reason\n"
	tests := []struct {
		name string
		in   string
		want []Entry
	}{
		{"header only", header, nil},
		{"header only, no newline", "kind,value,platform,reason", nil},
		{"entries", header + "user,u-1,,opt_out\ntoken,abcd,ios,invalid_token\ntoken,fcm:x,android,\n", []Entry{
			user(Blacklist, "u-1", "opt_out"),
			token(Blacklist, IOS, "abcd", "invalid_token"),
			token(Blacklist, Android, "fcm:x", ""),
		}},
		{"columns in another order", "platform,reason,kind,value\nios,abuse,token,abcd\n,,user,u-1\n", []Entry{
			token(Blacklist, IOS, "abcd", "abuse"),
			user(Blacklist, "u-1", ""),
		}},
		{"BOM", "\uFEFF" + header + "user,u-1,,\n", []Entry{user(Blacklist, "u-1", "")}},
		{"CRLF", "kind,value,platform,reason\r\nuser,u-1,,x\r\n", []Entry{user(Blacklist, "u-1", "x")}},
		{"empty lines and blank rows skipped", "\n" + header + "\nuser,u-1,,\n\n,,,\n , , ,\nuser,u-2,,\n\n", []Entry{
			user(Blacklist, "u-1", ""), user(Blacklist, "u-2", ""),
		}},
		{"header names, kinds and platforms without case or spaces", " Kind ,VALUE,Platform, reason\nTOKEN ,abcd, iOS ,x\n User,u-1,,\n", []Entry{
			token(Blacklist, IOS, "abcd", "x"), user(Blacklist, "u-1", ""),
		}},
		{"values and reasons kept as they are", header + "user, u 1 ,,  Opt Out \n", []Entry{user(Blacklist, " u 1 ", "  Opt Out ")}},
		{"quoted fields", header + `user,"u,1",,"said ""stop"""` + "\n", []Entry{user(Blacklist, "u,1", `said "stop"`)}},
		{"unicode", header + "user,ユーザー,,désabonné\n", []Entry{user(Blacklist, "ユーザー", "désabonné")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(tt.in), Blacklist)
			if err != nil {
				t.Fatalf("ReadCSV: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ReadCSV =\n%v\nwant\n%v", got, tt.want)
			}
			// Also one byte at a time.
			got, err = ReadCSV(iotest.OneByteReader(strings.NewReader(tt.in)), Blacklist)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("one byte at a time: %v, %v", got, err)
			}
		})
	}
}

func TestReadCSVErrors(t *testing.T) {
	const header = "kind,value,platform,reason\n"
	long := strings.Repeat("x", MaxValueLength+1)
	tests := []struct {
		name    string
		in      string
		list    Name
		wantErr string // the whole message
		is      error
		line    int // 0: not a *LineError
	}{
		{"bad list", header, "graylist", `invalid list entry: list "graylist": want blacklist or whitelist`, ErrInvalid, 0},
		{"empty input", "", Blacklist, "invalid list entry: no header: the first line must name the columns kind,value,platform,reason", ErrInvalid, 0},
		{"only empty lines", "\n\n", Blacklist, "invalid list entry: no header: the first line must name the columns kind,value,platform,reason", ErrInvalid, 0},
		{"no header", "user,u-1,,x\n", Blacklist, `line 1: header: unknown column "user" (want kind,value,platform,reason, in any order)`, ErrInvalid, 1},
		{"unknown column", "kind,value,platform,reason,comment\n", Blacklist, `line 1: header: unknown column "comment" (want kind,value,platform,reason, in any order)`, ErrInvalid, 1},
		{"missing column", "kind,value,platform\n", Blacklist, `line 1: header: no column "reason" (want kind,value,platform,reason, in any order)`, ErrInvalid, 1},
		{"column twice", "kind,value,kind,reason\n", Blacklist, `line 1: header: column "kind" twice`, ErrInvalid, 1},
		{"header after empty lines", "\n\nkind,value\n", Blacklist, `line 3: header: no column "platform" (want kind,value,platform,reason, in any order)`, ErrInvalid, 3},
		{"bad platform", header + "user,u-1,,\nuser,u-2,,\nuser,u-3,,\nuser,u-4,,\nuser,u-5,,\ntoken,abcd,windows,\n", Blacklist,
			`line 7: platform "windows": a token entry needs ios or android`, ErrInvalid, 7},
		{"no platform", header + "token,abcd,,\n", Blacklist, `line 2: platform "": a token entry needs ios or android`, ErrInvalid, 2},
		{"user with a platform", header + "user,u-1,ios,\n", Blacklist, `line 2: a user entry has no platform (got "ios")`, ErrInvalid, 2},
		{"bad kind", header + "device,abcd,ios,\n", Blacklist, `line 2: kind "device": want user or token`, ErrInvalid, 2},
		{"empty kind", header + ",abcd,ios,\n", Blacklist, `line 2: kind "": want user or token`, ErrInvalid, 2},
		{"empty value", header + "user,,,x\n", Blacklist, `line 2: empty value`, ErrInvalid, 2},
		{"value too long", header + "user," + long + ",,\n", Blacklist, `line 2: value longer than 4096 bytes`, ErrInvalid, 2},
		{"reason too long", header + "user,u-1,," + strings.Repeat("r", MaxReasonLength+1) + "\n", Blacklist, `line 2: reason longer than 200 bytes`, ErrInvalid, 2},
		{"control character", header + "user,\"u\x01\",,\n", Blacklist, `line 2: value "u\x01": control character U+0001 at byte 1`, ErrInvalid, 2},
		{"newline in a value", header + "user,u-1,,ok\nuser,\"u\n2\",,\n", Blacklist, `line 3: value "u\n2": control character U+000A at byte 1`, ErrInvalid, 3},
		{"formula as a token", header + "token,=1+2,ios,\n", Blacklist, `line 2: token "=1+2": a device token cannot start with "="`, ErrInvalid, 2},
		{"bidi override", header + "user,\"invoice-\u202Egpj.exe\",,\n", Blacklist, `line 2: value "invoice-\u202egpj.exe": bidirectional formatting character U+202E at byte 8`, ErrInvalid, 2},
		{"invalid UTF-8", header + "token,\"ab\xffcd\",ios,\n", Blacklist, `line 2: value "ab\xffcd": not valid UTF-8`, ErrInvalid, 2},
		{"C1 control in a reason", header + "user,u-1,,\"why\u0085\"\n", Blacklist, `line 2: reason "why\u0085": C1 control character U+0085 at byte 3`, ErrInvalid, 2},
		{"line after a multi-line field", header + "user,\"u\n2\",ios,\n", Blacklist, `line 2: a user entry has no platform (got "ios")`, ErrInvalid, 2},
		{"too few fields", header + "user,u-1,,\nuser,u-2\n", Blacklist, "line 3: wrong number of fields: 2, want 4 (kind,value,platform,reason)", csv.ErrFieldCount, 3},
		{"too many fields", header + "user,u-1,,,\n", Blacklist, "line 2: wrong number of fields: 5, want 4 (kind,value,platform,reason)", csv.ErrFieldCount, 2},
		{"bare quote", header + "user,\"u-1\"00,,\n", Blacklist, `line 2, column 10: extraneous or missing " in quoted-field`, csv.ErrQuote, 2},
		{"bare quote in a field", header + "user,u\"1,,\n", Blacklist, `line 2, column 7: bare " in non-quoted-field`, csv.ErrBareQuote, 2},
		{"unterminated quote", header + "user,\"u-1,,\n", Blacklist, `line 2, column 13: extraneous or missing " in quoted-field`, csv.ErrQuote, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCSV(strings.NewReader(tt.in), tt.list)
			if err == nil {
				t.Fatalf("ReadCSV = %v, want an error", got)
			}
			if got != nil {
				t.Errorf("entries returned with an error: %v", got)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error\n%s\nwant\n%s", err, tt.wantErr)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			var le *LineError
			if errors.As(err, &le) != (tt.line != 0) || (le != nil && le.Line != tt.line) {
				t.Errorf("LineError %+v, want line %d", le, tt.line)
			}
		})
	}
}

func TestReadCSVReaderError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("kind,value,platform,reason\nuser,u-1,,\n"), iotest.ErrReader(boom))
	if _, err := ReadCSV(r, Blacklist); !errors.Is(err, boom) {
		t.Errorf("ReadCSV = %v, want %v", err, boom)
	}
}

func TestCSVRoundTrip(t *testing.T) {
	entries := []Entry{
		user(Whitelist, "u-1", "tester"),
		token(Whitelist, IOS, strings.Repeat("ab", 32), ""),
		token(Whitelist, Android, "fcm:APA91b-x_y", "test_device"),
		user(Whitelist, ` "quoted", with comma `, `reason, "with" quotes`),
		user(Whitelist, " leading space", "trailing space "),
		user(Whitelist, `\.`, "#"),
		user(Whitelist, "ユーザー", "\u00e9"),
		user(Whitelist, strings.Repeat("v", MaxValueLength), strings.Repeat("r", MaxReasonLength)),
	}
	buf := writeCSV(t, entries)
	if first, _, _ := strings.Cut(buf.String(), "\n"); first != strings.Join(CSVHeader, ",") {
		t.Errorf("header %q, want %q", first, strings.Join(CSVHeader, ","))
	}
	got, err := ReadCSV(buf, Whitelist)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, entries) {
		t.Errorf("read back\n%q\nwant\n%q", got, entries)
	}
}

func TestCSVWriter(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewCSVWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// The list is not written, and not checked.
	if err := w.Write(Entry{List: "", Kind: User, Value: "u-1", Reason: "x"}); err != nil {
		t.Errorf("Write: %v", err)
	}
	for _, e := range []Entry{
		{Kind: User, Platform: IOS, Value: "u-1"},
		{Kind: Token, Value: "abcd"},
		{Kind: User},
		{Kind: User, Value: "a\nb"},
	} {
		if err := w.Write(e); !errors.Is(err, ErrInvalid) {
			t.Errorf("Write(%+v) = %v, want ErrInvalid", e, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "kind,value,platform,reason\nuser,u-1,,x\n"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}

	// A failing writer's error comes out of Flush.
	boom := errors.New("disk full")
	w, err = NewCSVWriter(failWriter{boom})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush() = %v, want %v", err, boom)
	}
}

// TestCSVWriterEscapesFormulas checks that values and reasons a
// spreadsheet would run as formulas are written with a quote in front
// (issue 13, item 4), and read back as they were.
func TestCSVWriterEscapesFormulas(t *testing.T) {
	entries := []Entry{
		user(Blacklist, `=HYPERLINK("http://x")`, "+1"),
		user(Blacklist, "-2", "@SUM(A1)"),
		user(Blacklist, "'=already quoted", "''+twice"),
		user(Blacklist, "'plain", "a=b"),
	}
	buf := writeCSV(t, entries)
	want := "kind,value,platform,reason\n" +
		`user,"'=HYPERLINK(""http://x"")",,'+1` + "\n" +
		"user,'-2,,'@SUM(A1)\n" +
		"user,''=already quoted,,'''+twice\n" +
		"user,'plain,,a=b\n"
	if buf.String() != want {
		t.Errorf("wrote\n%s\nwant\n%s", buf.String(), want)
	}
	got, err := ReadCSV(buf, Blacklist)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, entries) {
		t.Errorf("read back\n%q\nwant\n%q", got, entries)
	}
}

func TestEscapeFormula(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"a=b", "a=b"},
		{"'", "'"},
		{"'abc", "'abc"},
		{"=1+2", "'=1+2"},
		{"+1", "'+1"},
		{"-1", "'-1"},
		{"@x", "'@x"},
		{"\tx", "'\tx"},
		{"\rx", "'\rx"},
		{"'=x", "''=x"},
		{"''-x", "'''-x"},
	} {
		if got := EscapeFormula(tt.in); got != tt.want {
			t.Errorf("EscapeFormula(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := UnescapeFormula(EscapeFormula(tt.in)); got != tt.in {
			t.Errorf("UnescapeFormula(EscapeFormula(%q)) = %q", tt.in, got)
		}
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// FuzzReadCSV checks that ReadCSV never panics, that every entry it
// accepts is valid, and that what it accepts, written with CSVWriter,
// reads back the same.
func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"",
		"kind,value,platform,reason\n",
		"kind,value,platform,reason\nuser,u-1,,opt_out\ntoken,abcd,ios,\n",
		"\uFEFFreason,platform,value,kind\r\n,android,fcm:1,token\r\n",
		"kind,value,platform,reason\nuser,\"a,\"\"b\"\"\",,\n",
		"kind,value,platform,reason\ntoken,x,windows,\n",
		"kind,value\n",
		"kind,value,platform,reason\nuser,\"u-1\"00,,\n",
		"kind,value,platform,reason\n\n,,,\nUSER, x ,, y \n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ReadCSV(strings.NewReader(in), Blacklist)
		if err != nil {
			if entries != nil {
				t.Fatalf("entries with an error: %v", err)
			}
			return
		}
		for _, e := range entries {
			if err := e.Validate(); err != nil {
				t.Fatalf("accepted an invalid entry %+v: %v", e, err)
			}
		}
		var buf bytes.Buffer
		w, err := NewCSVWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if err := w.Write(e); err != nil {
				t.Fatalf("Write(%+v): %v", e, err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		again, err := ReadCSV(&buf, Blacklist)
		if err != nil {
			t.Fatalf("reading back %q: %v", buf.String(), err)
		}
		if !reflect.DeepEqual(again, entries) {
			t.Fatalf("round trip: %q, want %q", again, entries)
		}
	})
}

// writeCSV writes entries with a CSVWriter and returns what it wrote.
func writeCSV(t *testing.T, entries []Entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewCSVWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Write(e); err != nil {
			t.Fatalf("Write(%v): %v", e, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// TestReadCSVLongLine checks that a line without an end is refused once it
// passes MaxLine, naming it, without reading the rest of the file.
func TestReadCSVLongLine(t *testing.T) {
	const size = 40 << 20 // a 40 MB line
	src := &countingReader{r: io.MultiReader(
		strings.NewReader("kind,value,platform,reason\ntoken,"),
		io.LimitReader(repeatByte('a'), size),
		strings.NewReader(",ios,\n"),
	)}
	_, err := ReadCSV(src, Blacklist)
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 || !errors.Is(err, ErrInvalid) {
		t.Fatalf("ReadCSV = %v, want a *LineError for line 2 that wraps ErrInvalid", err)
	}
	if want := "line 2: longer than 16384 bytes"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if src.n > 1<<20 {
		t.Errorf("read %d bytes of the file, want it refused within the first MB", src.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// repeatByte is an endless reader of one byte.
type repeatByte byte

func (b repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}
