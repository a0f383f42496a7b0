package lists

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// These benchmarks check the requirements on a Set and on Lists (they run
// only with -bench):
//
//	go test -run '^$' -bench . -benchtime 3s ./lists/
//
//   - BenchmarkLookup10M: at most 100 ns a lookup among 10 million token
//     entries, no allocation, at most 400 MB of heap (heap-MB).
//   - BenchmarkFilter: no allocation.
//   - BenchmarkLoad1M: a Load of 1 million entries well under 5 s (s/load).

// splitmix64 is a fast, well-mixed sequence for making test tokens.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// appendToken appends the i-th test token: 64 hex digits, like an APNs
// device token.
func appendToken(dst []byte, i uint64) []byte {
	var raw [32]byte
	for j := range 4 {
		binary.LittleEndian.PutUint64(raw[8*j:], splitmix64(i*4+uint64(j)))
	}
	return hex.AppendEncode(dst, raw[:])
}

func tokenString(i uint64) string { return string(appendToken(nil, i)) }

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

var benchReasons = []string{"opt_out", "invalid_token", "abuse"}

// BenchmarkLookup10M looks up tokens in a Set of 10 million iOS token
// entries. It reports the heap the Set takes (heap-MB, heap-B/entry).
//
//   - mixed: tokens at random, half of them in the set (the requirement).
//   - misses: tokens not in the set, as nearly all recipients are.
//   - parallel: mixed, from GOMAXPROCS goroutines.
//   - floor: the hash of the token and one read of a random slot of the
//     same table, without probing or synchronization: what any hashed
//     index of this size pays for its cache and TLB misses on this
//     machine. Compare the others to it rather than to absolute numbers.
func BenchmarkLookup10M(b *testing.B) {
	const n = 10_000_000
	before := heapInUse()
	s := NewSet()
	buf := make([]byte, 0, 64)
	for i := range uint64(n) {
		buf = appendToken(buf[:0], i)
		s.Add(Token, IOS, string(buf), benchReasons[i%3])
	}
	heap := heapInUse() - before
	if heap > 400e6 {
		b.Errorf("a Set of %d entries takes %.0f MB of heap, want at most 400", n, float64(heap)/1e6)
	}

	// Pools of queries, too many for the slots they hit to stay in the
	// CPU's caches. The tokens are laid out one after the other, as in a
	// decoded batch.
	rng := rand.New(rand.NewPCG(1, 2))
	pool := func(hitRatio float64) []string {
		all := make([]byte, 0, 64<<20)
		for range 1 << 20 {
			j := rng.Uint64N(n)
			if rng.Float64() >= hitRatio {
				j += n // not in the set
			}
			all = appendToken(all, j)
		}
		str := string(all)
		qs := make([]string, 1<<20)
		for i := range qs {
			qs[i] = str[64*i : 64*i+64]
		}
		return qs
	}
	mixed, misses := pool(0.5), pool(0)
	lookups := func(queries []string) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			hits, i := 0, 0
			for b.Loop() {
				if _, ok := s.Lookup(Token, IOS, queries[i&(len(queries)-1)]); ok {
					hits++
				}
				i++
			}
			b.ReportMetric(float64(heap)/1e6, "heap-MB")
			b.ReportMetric(float64(heap)/n, "heap-B/entry")
			b.ReportMetric(float64(hits)/float64(i), "hit-ratio")
		}
	}
	b.Run("mixed", lookups(mixed))
	b.Run("misses", lookups(misses))
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(mixed))
			for pb.Next() {
				s.Lookup(Token, IOS, mixed[i&(len(mixed)-1)])
				i++
			}
		})
	})
	b.Run("floor", func(b *testing.B) {
		var sum uint64
		i := 0
		for b.Loop() {
			h := s.hash(Token, IOS, mixed[i&(len(mixed)-1)])
			t := s.shards[h>>s.shift].tab.Load()
			sum += t.slots[h&t.mask]
			i++
		}
		runtime.KeepAlive(sum)
	})
	runtime.KeepAlive(s)
}

// recipient is a push recipient for BenchmarkFilter.
type recipient struct {
	platform, token, userID string
	test                    bool
}

// BenchmarkFilter filters recipients against a blacklist of 1 million
// entries and a whitelist of 1000: most recipients pass, 1 in 20 is
// blacklisted, 1 in 10 is in a test campaign.
func BenchmarkFilter(b *testing.B) {
	src := newBenchSource(500_000, 500_000, 1000)
	l := New(src, nil, Config{})
	if err := l.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rs := make([]recipient, 1<<16)
	for i := range rs {
		r := recipient{platform: IOS, token: tokenString(1<<40 + uint64(i)), userID: "user-" + strconv.Itoa(1<<30+i)}
		switch x := rng.IntN(20); {
		case x == 0: // a blacklisted token
			r.token = tokenString(rng.Uint64N(500_000))
		case x < 3:
			r.test = true
			if x == 2 { // a whitelisted tester
				r.userID = "tester-" + strconv.Itoa(rng.IntN(1000))
			}
		}
		rs[i] = r
	}
	b.ReportAllocs()
	blocked, i := 0, 0
	for b.Loop() {
		r := &rs[i&(len(rs)-1)]
		if _, _, bl := l.Filter(r.platform, r.token, r.userID, r.test); bl {
			blocked++
		}
		i++
	}
	b.ReportMetric(float64(blocked)/float64(i), "blocked-ratio")
}

// BenchmarkLoad1M loads a blacklist of 1 million entries (700,000 tokens,
// 300,000 user ids) and a whitelist of 1000 from an in-memory Source.
func BenchmarkLoad1M(b *testing.B) {
	src := newBenchSource(700_000, 300_000, 1000)
	l := New(src, nil, Config{})
	b.ReportAllocs()
	start := time.Now()
	loads := 0
	for b.Loop() {
		if err := l.Load(context.Background()); err != nil {
			b.Fatal(err)
		}
		loads++
	}
	b.ReportMetric(time.Since(start).Seconds()/float64(loads), "s/load")
	if l.Len(Blacklist) != 1_000_000 {
		b.Fatalf("Len(Blacklist) = %d", l.Len(Blacklist))
	}
}

// benchSource is a Source of fixed entries in slices.
type benchSource struct {
	black, white []Entry
}

// newBenchSource returns a Source with a blacklist of tokens iOS tokens
// and users user ids, and a whitelist of testers user ids.
func newBenchSource(tokens, users, testers int) *benchSource {
	s := &benchSource{}
	for i := range tokens {
		s.black = append(s.black, Entry{List: Blacklist, Kind: Token, Platform: IOS, Value: tokenString(uint64(i)), Reason: benchReasons[i%3]})
	}
	for i := range users {
		s.black = append(s.black, Entry{List: Blacklist, Kind: User, Value: "user-" + strconv.Itoa(i), Reason: "opt_out"})
	}
	for i := range testers {
		s.white = append(s.white, Entry{List: Whitelist, Kind: User, Value: "tester-" + strconv.Itoa(i), Reason: "tester"})
	}
	return s
}

func (s *benchSource) EachEntry(ctx context.Context, list Name, fn func(Entry) error) error {
	es := s.black
	if list == Whitelist {
		es = s.white
	}
	for _, e := range es {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (s *benchSource) ListChanges(context.Context, int64, int) ([]Change, error) { return nil, nil }
func (s *benchSource) ListRev(context.Context) (int64, error)                    { return 0, nil }
