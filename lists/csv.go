package lists

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CSVHeader names the columns of a list's CSV file, in the order CSVWriter
// writes them. ReadCSV accepts them in any order. Do not modify it.
var CSVHeader = []string{"kind", "value", "platform", "reason"}

// csvColumns is CSVHeader, out of reach of callers.
var csvColumns = [...]string{"kind", "value", "platform", "reason"}

// Column indexes in csvColumns.
const (
	colKind = iota
	colValue
	colPlatform
	colReason
	nColumns
)

// utf8BOM is what some spreadsheets write at the start of a UTF-8 file.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// A LineError reports what is wrong in a CSV file, and where. Err wraps
// ErrInvalid for a bad header or entry, and is one of encoding/csv's errors
// (csv.ErrFieldCount, csv.ErrQuote, csv.ErrBareQuote) for bad CSV.
type LineError struct {
	Line   int // from 1
	Column int // from 1, 0 when the error is about the whole line
	Err    error
}

// Error returns the line, the column if known, and what is wrong, as
// in `line 7: platform "windows": a token entry needs ios or android`.
func (e *LineError) Error() string {
	if e.Column > 0 {
		return fmt.Sprintf("line %d, column %d: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// Unwrap returns Err.
func (e *LineError) Unwrap() error { return e.Err }

// ReadCSV reads the entries of a list from CSV: a header line naming the
// columns kind, value, platform and reason in any order (CSVHeader), then
// one entry a line. Header names, kinds and platforms are read without
// case and surrounding spaces; values and reasons are taken as they are.
// Empty lines, and lines whose fields are all empty, are skipped; a UTF-8
// byte order mark at the start is ignored. Values and reasons that
// CSVWriter escaped against spreadsheet formulas are read back as they
// were (UnescapeFormula). A file with just the header
// holds no entries.
//
// Every entry is checked with Entry.Validate; the whole input is refused
// at the first problem with a *LineError naming its line, that wraps
// ErrInvalid for a bad header or entry, or the encoding/csv error for bad
// CSV. A line longer than MaxLine is refused as soon as it is, with a
// *LineError naming it that wraps ErrInvalid. Other errors are the
// reader's. ReadCSV holds the whole list in memory: bound the size of
// what it reads.
func ReadCSV(r io.Reader, list Name) ([]Entry, error) {
	if !list.Valid() {
		return nil, fmt.Errorf("%w: list %q: want blacklist or whitelist", ErrInvalid, list)
	}
	br := bufio.NewReader(&LineLimitReader{R: r, Max: MaxLine})
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1 // the header is checked below

	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: no header: the first line must name the columns %s",
			ErrInvalid, strings.Join(csvColumns[:], ","))
	}
	if err != nil {
		return nil, csvError(err, nil)
	}
	line, _ := cr.FieldPos(0)
	cols, err := parseHeader(header)
	if err != nil {
		return nil, &LineError{Line: line, Err: err}
	}
	cr.FieldsPerRecord = nColumns

	var entries []Entry
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return entries, nil
		}
		if err != nil {
			return nil, csvError(err, rec)
		}
		if blank(rec) {
			continue
		}
		e := Entry{
			List:     list,
			Kind:     Kind(normalize(rec[cols[colKind]])),
			Platform: normalize(rec[cols[colPlatform]]),
			Value:    UnescapeFormula(rec[cols[colValue]]),
			Reason:   UnescapeFormula(rec[cols[colReason]]),
		}
		if msg := e.problem(); msg != "" {
			line, _ := cr.FieldPos(0)
			return nil, &LineError{Line: line, Err: invalidError(msg)}
		}
		entries = append(entries, e)
	}
}

// parseHeader returns, for each column of csvColumns, its index in the
// header.
func parseHeader(header []string) ([nColumns]int, error) {
	var cols [nColumns]int
	var seen [nColumns]bool
	want := strings.Join(csvColumns[:], ",")
	for i, name := range header {
		c := columnIndex(normalize(name))
		switch {
		case c < 0:
			return cols, invalidError(fmt.Sprintf("header: unknown column %q (want %s, in any order)", name, want))
		case seen[c]:
			return cols, invalidError(fmt.Sprintf("header: column %q twice", csvColumns[c]))
		}
		seen[c] = true
		cols[c] = i
	}
	for c, ok := range seen {
		if !ok {
			return cols, invalidError(fmt.Sprintf("header: no column %q (want %s, in any order)", csvColumns[c], want))
		}
	}
	return cols, nil
}

// columnIndex returns the index of a column name in csvColumns, or -1.
func columnIndex(name string) int {
	for i, c := range csvColumns {
		if name == c {
			return i
		}
	}
	return -1
}

// normalize returns a header name, kind or platform as written in the
// file, trimmed and in lower case.
func normalize(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// blank reports whether every field of a record is empty or spaces.
func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// csvError turns an encoding/csv error into a *LineError; rec is the
// record read with it, for csv.ErrFieldCount.
func csvError(err error, rec []string) error {
	var pe *csv.ParseError
	var long *LineTooLongError
	switch {
	case errors.As(err, &long):
		return &LineError{Line: long.Line, Err: invalidError(fmt.Sprintf("longer than %d bytes", long.Max))}
	case !errors.As(err, &pe):
		return fmt.Errorf("read csv: %w", err)
	}
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return &LineError{Line: pe.Line, Err: fmt.Errorf("%w: %d, want %d (%s)",
			csv.ErrFieldCount, len(rec), nColumns, strings.Join(csvColumns[:], ","))}
	}
	return &LineError{Line: pe.Line, Column: pe.Column, Err: pe.Err}
}

// CSVWriter writes the entries of a list as CSV that ReadCSV reads back:
// the header CSVHeader, then one line an entry. Values and reasons that a
// spreadsheet would run as a formula are escaped with EscapeFormula. It
// buffers: call Flush at the end.
type CSVWriter struct {
	w   *csv.Writer
	rec [nColumns]string
}

// NewCSVWriter returns a CSVWriter to w, having written the header.
func NewCSVWriter(w io.Writer) (*CSVWriter, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvColumns[:]); err != nil {
		return nil, err
	}
	return &CSVWriter{w: cw}, nil
}

// Write writes an entry. An entry that ReadCSV would refuse is not
// written: Write returns an error wrapping ErrInvalid (the entry's List is
// not checked: the file does not hold it).
func (c *CSVWriter) Write(e Entry) error {
	if msg := e.rowProblem(); msg != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	c.rec[colKind] = string(e.Kind)
	c.rec[colValue] = EscapeFormula(e.Value)
	c.rec[colPlatform] = e.Platform
	c.rec[colReason] = EscapeFormula(e.Reason)
	return c.w.Write(c.rec[:])
}

// Flush writes what is buffered and returns the first error met writing,
// if any.
func (c *CSVWriter) Flush() error {
	c.w.Flush()
	return c.w.Error()
}

// formulaStart reports whether a spreadsheet reads a cell that starts with
// c as a formula (OWASP, "CSV Injection").
func formulaStart(c byte) bool {
	switch c {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// EscapeFormula returns s as it is safe to write in a CSV cell that a
// spreadsheet may open: a value that starts with =, +, -, @, a tab or a
// carriage return gets a single quote in front, as OWASP recommends, so
// that it is shown as text rather than run. Values that start with single
// quotes followed by one of those get one more quote, so that
// UnescapeFormula undoes EscapeFormula exactly. Other values are returned
// as they are.
func EscapeFormula(s string) string {
	if rest := strings.TrimLeft(s, "'"); rest != "" && formulaStart(rest[0]) {
		return "'" + s
	}
	return s
}

// UnescapeFormula undoes EscapeFormula: UnescapeFormula(EscapeFormula(s))
// is s for every s. A value that EscapeFormula leaves alone is returned as
// it is.
func UnescapeFormula(s string) string {
	if rest := strings.TrimLeft(s, "'"); len(rest) < len(s) && rest != "" && formulaStart(rest[0]) {
		return s[1:]
	}
	return s
}

// MaxLine is the longest CSV line ReadCSV reads, in bytes: room for the
// longest value and reason, quoted with every quote doubled.
const MaxLine = 16 << 10

// A LineTooLongError is the error of a LineLimitReader: line Line of its
// input grew longer than Max bytes.
type LineTooLongError struct {
	Line, Max int
}

func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("line %d is longer than %d bytes", e.Line, e.Max)
}

// LineLimitReader reads from R and fails with a *LineTooLongError as soon
// as a line (ended by '\n', counted from 1) grows longer than Max bytes,
// so that a file without line ends cannot fill the memory of the CSV
// reader that reads it: encoding/csv holds a whole line.
type LineLimitReader struct {
	R   io.Reader
	Max int

	line int // lines ended so far
	cur  int // bytes of the current line so far
}

// Read reads from R, failing once a line is too long.
func (l *LineLimitReader) Read(p []byte) (int, error) {
	n, err := l.R.Read(p)
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			l.cur += n - i
			break
		}
		if l.cur+j > l.Max {
			l.cur += j
			break
		}
		l.line++
		l.cur = 0
		i += j + 1
	}
	if l.cur > l.Max {
		return 0, &LineTooLongError{Line: l.line + 1, Max: l.Max}
	}
	return n, err
}

// Line returns the number of the line being read, from 1.
func (l *LineLimitReader) Line() int { return l.line + 1 }
