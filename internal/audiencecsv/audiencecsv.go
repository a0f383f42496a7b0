// Package audiencecsv generates audience CSV files of any size as they are
// read, for benchmarks (cmd/pushbench -audience and the store's
// BenchmarkImportAudience). It is not for reading or checking audiences.
package audiencecsv

import (
	"fmt"
	"io"
)

// Zones are the time zones of the generated recipients, in turn; "" is
// none (the campaign's zone).
var Zones = [...]string{"", "Asia/Seoul", "America/New_York", "Europe/Paris"}

// Reader is a CSV audience file of N distinct recipients, half iOS and
// half Android, generated as it is read: the file is never held in
// memory. Tokens are pseudo-random (a hash of the line), as real ones are.
type Reader struct {
	N   int
	i   int
	buf []byte
}

// Read reads the next bytes of the file.
func (c *Reader) Read(p []byte) (int, error) {
	for len(c.buf) < len(p) && c.i <= c.N {
		if c.i == 0 {
			c.buf = append(c.buf, "platform,token,user_id,timezone\n"...)
		} else {
			h1, h2 := splitmix(uint64(c.i)), splitmix(uint64(c.i)^0x9e3779b97f4a7c15)
			zone := Zones[c.i%len(Zones)]
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

// splitmix is SplitMix64's output function: a bijection of 64-bit
// numbers that looks random.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
