package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/pushd/pushd/internal/audiencecsv"
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
				a, err := s.ImportAudience(context.Background(), fmt.Sprintf("bench-%d", i), "bench", &audiencecsv.Reader{N: rows})
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
