package store

import (
	"context"
	"fmt"
	"io"
	"testing"
)

// BenchmarkImportAudience imports generated audiences of distinct
// recipients, half iOS and half Android, in four zones. The 1,000,000-row
// case is issue 9's target: run it once with
//
//	go test -run '^$' -bench 'ImportAudience/rows=1000000' -benchtime 1x ./store/
func BenchmarkImportAudience(b *testing.B) {
	for _, rows := range []int{10000, 1000000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			s, _ := setup(b)
			b.ResetTimer()
			for i := range b.N {
				a, err := s.ImportAudience(context.Background(), fmt.Sprintf("bench-%d", i), "bench", &benchAudienceCSV{n: rows})
				if err != nil {
					b.Fatal(err)
				}
				if a.Recipients != int64(rows) {
					b.Fatalf("recipients = %d, want %d", a.Recipients, rows)
				}
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// benchAudienceCSV is a CSV audience of n distinct recipients generated as
// it is read, with pseudo-random tokens (a hash of the line).
type benchAudienceCSV struct {
	n, i int
	buf  []byte
}

func (c *benchAudienceCSV) Read(p []byte) (int, error) {
	zones := [...]string{"", "Asia/Seoul", "America/New_York", "Europe/Paris"}
	for len(c.buf) < len(p) && c.i <= c.n {
		if c.i == 0 {
			c.buf = append(c.buf, "platform,token,user_id,timezone\n"...)
		} else {
			h1, h2 := mix64(uint64(c.i)), mix64(uint64(c.i)^0x9e3779b97f4a7c15)
			zone := zones[c.i%len(zones)]
			if c.i%2 == 0 {
				c.buf = fmt.Appendf(c.buf, "ios,%016x%016x%016x%016x,user-%d,%s\n", h1, h2, h1^h2, h1+h2, c.i, zone)
			} else {
				c.buf = fmt.Appendf(c.buf, "android,fcm:%016x%016x,user-%d,%s\n", h1, h2, c.i, zone)
			}
		}
		c.i++
	}
	if len(c.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.buf)
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	return n, nil
}

// mix64 is SplitMix64's output function, a bijection that looks random.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
