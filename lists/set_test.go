package lists

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	type op struct {
		do                      string // add, remove, lookup
		kind                    Kind
		platform, value, reason string
		want                    bool   // remove: removed; lookup: found
		wantReason              string // lookup
	}
	tests := []struct {
		name    string
		ops     []op
		wantLen int
	}{
		{"empty", []op{
			{do: "lookup", kind: User, value: "u-1"},
			{do: "remove", kind: User, value: "u-1"},
		}, 0},
		{"add then lookup", []op{
			{do: "add", kind: User, value: "u-1", reason: "opt_out"},
			{do: "lookup", kind: User, value: "u-1", want: true, wantReason: "opt_out"},
			{do: "lookup", kind: User, value: "u-2"},
		}, 1},
		{"kinds and platforms are distinct keys", []op{
			{do: "add", kind: Token, platform: IOS, value: "abc", reason: "invalid_token"},
			{do: "lookup", kind: Token, platform: IOS, value: "abc", want: true, wantReason: "invalid_token"},
			{do: "lookup", kind: Token, platform: Android, value: "abc"},
			{do: "lookup", kind: User, value: "abc"},
			{do: "lookup", kind: User, platform: IOS, value: "abc"},
		}, 1},
		{"unusual kinds and platforms are keys too", []op{
			{do: "add", kind: "device", platform: "windows", value: "abc", reason: "r1"},
			{do: "add", kind: "devicew", platform: "indows", value: "abc", reason: "r2"},
			{do: "add", kind: User, platform: IOS, value: "abc", reason: "r3"},
			{do: "lookup", kind: "device", platform: "windows", value: "abc", want: true, wantReason: "r1"},
			{do: "lookup", kind: "devicew", platform: "indows", value: "abc", want: true, wantReason: "r2"},
			{do: "lookup", kind: User, platform: IOS, value: "abc", want: true, wantReason: "r3"},
			{do: "lookup", kind: User, value: "abc"},
			{do: "lookup", kind: Token, platform: IOS, value: "abc"},
		}, 3},
		{"add again changes the reason", []op{
			{do: "add", kind: User, value: "u-1", reason: "opt_out"},
			{do: "add", kind: User, value: "u-1", reason: "abuse"},
			{do: "lookup", kind: User, value: "u-1", want: true, wantReason: "abuse"},
		}, 1},
		{"empty reason", []op{
			{do: "add", kind: User, value: "u-1"},
			{do: "lookup", kind: User, value: "u-1", want: true},
		}, 1},
		{"remove", []op{
			{do: "add", kind: User, value: "u-1", reason: "opt_out"},
			{do: "add", kind: User, value: "u-2", reason: "opt_out"},
			{do: "remove", kind: User, value: "u-1", want: true},
			{do: "remove", kind: User, value: "u-1"},
			{do: "lookup", kind: User, value: "u-1"},
			{do: "lookup", kind: User, value: "u-2", want: true, wantReason: "opt_out"},
		}, 1},
		{"add after remove", []op{
			{do: "add", kind: User, value: "u-1", reason: "a"},
			{do: "remove", kind: User, value: "u-1", want: true},
			{do: "add", kind: User, value: "u-1", reason: "b"},
			{do: "lookup", kind: User, value: "u-1", want: true, wantReason: "b"},
		}, 1},
		{"empty value", []op{
			{do: "add", kind: User, value: "", reason: "a"},
			{do: "lookup", kind: User, value: "", want: true, wantReason: "a"},
			{do: "lookup", kind: Token, platform: IOS, value: ""},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet()
			for i, o := range tt.ops {
				switch o.do {
				case "add":
					s.Add(o.kind, o.platform, o.value, o.reason)
				case "remove":
					if got := s.Remove(o.kind, o.platform, o.value); got != o.want {
						t.Errorf("op %d: Remove(%q, %q, %q) = %v, want %v", i, o.kind, o.platform, o.value, got, o.want)
					}
				case "lookup":
					r, ok := s.Lookup(o.kind, o.platform, o.value)
					if ok != o.want || r != o.wantReason {
						t.Errorf("op %d: Lookup(%q, %q, %q) = %q, %v; want %q, %v",
							i, o.kind, o.platform, o.value, r, ok, o.wantReason, o.want)
					}
				}
			}
			if got := s.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestSetReasons(t *testing.T) {
	s := NewSet()
	s.Add(User, "", "first-other", ReasonOther)
	for i := range 300 {
		s.Add(User, "", "u"+strconv.Itoa(i), "r"+strconv.Itoa(i))
	}
	for i := range 300 {
		want := "r" + strconv.Itoa(i)
		if i >= 254 {
			want = ReasonOther
		}
		if r, ok := s.Lookup(User, "", "u"+strconv.Itoa(i)); !ok || r != want {
			t.Errorf("Lookup(u%d) = %q, %v; want %q, true", i, r, ok, want)
		}
	}
	if r, _ := s.Lookup(User, "", "first-other"); r != ReasonOther {
		t.Errorf("reason %q, want %q", r, ReasonOther)
	}
	// Known reasons keep their code once the table is full.
	s.Add(User, "", "late", "r7")
	if r, _ := s.Lookup(User, "", "late"); r != "r7" {
		t.Errorf("reason %q, want r7", r)
	}
}

// TestSetGrowth adds and removes enough entries to grow every shard
// several times, checking each entry at every step of a sample.
func TestSetGrowth(t *testing.T) {
	for _, bits := range []uint{0, 2, defaultShardBits} {
		t.Run(fmt.Sprintf("%d shards", 1<<bits), func(t *testing.T) {
			s := newSet(bits)
			const n = 20000
			key := func(i int) string { return "t" + strconv.Itoa(i) }
			for i := range n {
				s.Add(Token, Android, key(i), "r"+strconv.Itoa(i%5))
				if i%997 == 0 {
					for j := 0; j <= i; j += 101 {
						if _, ok := s.Lookup(Token, Android, key(j)); !ok {
							t.Fatalf("after %d adds: %s lost", i+1, key(j))
						}
					}
				}
			}
			if s.Len() != n {
				t.Fatalf("Len() = %d, want %d", s.Len(), n)
			}
			for i := range s.shards {
				checkShard(t, &s.shards[i])
			}
			for i := 0; i < n; i += 2 {
				if !s.Remove(Token, Android, key(i)) {
					t.Fatalf("Remove(%s) = false", key(i))
				}
			}
			for i := range n {
				r, ok := s.Lookup(Token, Android, key(i))
				if want := i%2 == 1; ok != want || (ok && r != "r"+strconv.Itoa(i%5)) {
					t.Fatalf("Lookup(%s) = %q, %v; want found %v", key(i), r, ok, want)
				}
			}
			if s.Len() != n/2 {
				t.Fatalf("Len() = %d, want %d", s.Len(), n/2)
			}
			for i := range s.shards {
				checkShard(t, &s.shards[i])
			}
		})
	}
}

// checkShard checks a shard's invariants: its count, its load, and that
// every entry is reachable from its home slot.
func checkShard(t *testing.T, sh *shard) {
	t.Helper()
	tab := sh.tab.Load()
	if tab == nil {
		if sh.n != 0 {
			t.Fatalf("no table but n = %d", sh.n)
		}
		return
	}
	used := 0
	for i, w := range tab.slots {
		if w == 0 {
			continue
		}
		used++
		for j := (w >> 8) & tab.mask; j != uint64(i); j = (j + 1) & tab.mask {
			if tab.slots[j] == 0 {
				t.Fatalf("slot %d: entry %#x (home %d) is past free slot %d", i, w, (w>>8)&tab.mask, j)
			}
		}
	}
	if used != sh.n {
		t.Fatalf("%d slots in use, n = %d", used, sh.n)
	}
	if used*4 > len(tab.slots)*3 {
		t.Fatalf("%d of %d slots in use: more than 3/4", used, len(tab.slots))
	}
}

// collidingHash returns a hash for key x whose home slot is x%homes in any
// table of fewer than 2^20 slots, so that many keys share few home slots.
func collidingHash(x, homes uint64) uint64 { return x%homes | x<<20 }

// TestShardBackwardShift removes entries from tables crowded around a few
// home slots, including runs that wrap around the end, in every order of a
// random sample, checking the invariants and every entry after each step.
func TestShardBackwardShift(t *testing.T) {
	tests := []struct {
		name string
		keys []uint64 // hashes
	}{
		// Table of 8 slots (at most 6 entries).
		{"one home", []uint64{0 | 1<<20, 0 | 2<<20, 0 | 3<<20, 0 | 4<<20, 0 | 5<<20, 0 | 6<<20}},
		{"wrap", []uint64{6 | 1<<20, 6 | 2<<20, 7 | 3<<20, 7 | 4<<20, 0 | 5<<20, 1 | 6<<20}},
		{"interleaved homes", []uint64{2 | 1<<20, 3 | 2<<20, 2 | 3<<20, 4 | 4<<20, 3 | 5<<20, 5 | 6<<20}},
		{"gap then run", []uint64{1 | 1<<20, 3 | 2<<20, 3 | 3<<20, 4 | 4<<20, 7 | 5<<20, 7 | 6<<20}},
	}
	// And bigger tables crowded onto 3 homes.
	for _, n := range []uint64{20, 100, 200} {
		var keys []uint64
		for x := range n {
			keys = append(keys, collidingHash(x+1, 3))
		}
		tests = append(tests, struct {
			name string
			keys []uint64
		}{fmt.Sprintf("%d keys on 3 homes", n), keys})
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trials := 50
			if len(tt.keys) > 50 {
				trials = 2
			}
			for trial := range trials {
				var sh shard
				for i, h := range tt.keys {
					if !sh.add(h, uint8(i%250+1)) {
						t.Fatalf("add(%#x) = false", h)
					}
				}
				checkShard(t, &sh)
				order := rng.Perm(len(tt.keys))
				if trial == 0 {
					for i := range order {
						order[i] = i
					}
				}
				present := make(map[int]bool)
				for i := range tt.keys {
					present[i] = true
				}
				for _, i := range order {
					if !sh.remove(tt.keys[i]) {
						t.Fatalf("remove(%#x) = false", tt.keys[i])
					}
					if sh.remove(tt.keys[i]) {
						t.Fatalf("remove(%#x) twice = true", tt.keys[i])
					}
					delete(present, i)
					checkShard(t, &sh)
					for j, h := range tt.keys {
						w := sh.find(h)
						ok := w != 0
						if ok != present[j] || (ok && uint8(w) != uint8(j%250+1)) {
							t.Fatalf("after removing %#x: find(%#x) = %#x, %v; want found %v", tt.keys[i], h, w, ok, present[j])
						}
					}
				}
			}
		})
	}
}

// TestShardZeroKey: a hash whose stored bits are all zero, with reason
// code 0, must not look like a free slot.
func TestShardZeroKey(t *testing.T) {
	var sh shard
	for _, h := range []uint64{0, 1 << 60} {
		sh.add(h, codeNone)
		if w := sh.find(h); w == 0 {
			t.Errorf("find(%#x) after add = not found", h)
		}
		if !sh.remove(h) || sh.find(h) != 0 {
			t.Errorf("remove(%#x) did not remove it", h)
		}
	}
}

func TestSetLookupDoesNotAllocate(t *testing.T) {
	s := NewSet()
	s.Add(Token, IOS, "abc", "invalid_token")
	s.Add(User, "", "u-1", "opt_out")
	s.Add("other", "x", "v", "r")
	for _, k := range []Key{{Token, IOS, "abc"}, {Token, Android, "abc"}, {User, "", "u-1"}, {"other", "x", "v"}, {"other", "y", "v"}} {
		if n := testing.AllocsPerRun(100, func() { s.Lookup(k.Kind, k.Platform, k.Value) }); n != 0 {
			t.Errorf("Lookup(%v): %v allocations", k, n)
		}
	}
}

// TestSetConcurrent has writers add and remove churning entries, crowded
// into one shard so that removals shift entries back and tables grow,
// while readers check that entries that stay are always found. Run it
// with -race.
func TestSetConcurrent(t *testing.T) {
	s := newSet(0)
	const stable = 2000
	for i := range stable {
		s.Add(User, "", "stable-"+strconv.Itoa(i), "r"+strconv.Itoa(i%3))
	}
	var stop atomic.Bool
	var errs atomic.Int64
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Go(func() {
			for i := r; !stop.Load(); i++ {
				j := i * 7 % stable
				reason, ok := s.Lookup(User, "", "stable-"+strconv.Itoa(j))
				if !ok || reason != "r"+strconv.Itoa(j%3) {
					if errs.Add(1) < 5 {
						t.Errorf("Lookup(stable-%d) = %q, %v during writes", j, reason, ok)
					}
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 20000 {
				v := "churn-" + strconv.Itoa(w) + "-" + strconv.Itoa(rng.IntN(3000))
				if rng.IntN(2) == 0 {
					s.Add(Token, IOS, v, "churn")
				} else {
					s.Remove(Token, IOS, v)
				}
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	checkShard(t, &s.shards[0])
}

// TestShardConcurrent is TestSetConcurrent on one shard whose keys share
// three home slots, so that readers scan long runs while removals shift
// entries back through them.
func TestShardConcurrent(t *testing.T) {
	var sh shard
	const stable, churn = 150, 150
	for x := range uint64(stable) {
		sh.add(collidingHash(x+1, 3), uint8(x%200+1))
	}
	var stop atomic.Bool
	var errs atomic.Int64
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Go(func() {
			for i := r; !stop.Load(); i++ {
				x := uint64(i * 7 % stable)
				w := sh.find(collidingHash(x+1, 3))
				if ok := w != 0; !ok || uint8(w) != uint8(x%200+1) {
					if errs.Add(1) < 5 {
						t.Errorf("find(%d) = %#x, %v during writes", x, w, ok)
					}
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 20000 {
		h := collidingHash(uint64(stable+1+rng.IntN(churn)), 3)
		sh.mu.Lock()
		if rng.IntN(2) == 0 {
			sh.add(h, 255)
		} else {
			sh.remove(h)
		}
		sh.mu.Unlock()
	}
	stop.Store(true)
	readers.Wait()
	checkShard(t, &sh)
}

// TestShardFindDuringRemoval checks that a reader does not trust what it
// reads while a removal is moving entries: it waits for the writer and
// reads what the removal left.
func TestShardFindDuringRemoval(t *testing.T) {
	var sh shard
	a, b := collidingHash(1, 1), collidingHash(2, 1) // same home: b after a
	sh.add(a, 1)
	sh.add(b, 2)

	// A removal of a, stopped half way: b copied back into a's slot, its
	// old slot not yet freed... and then b removed too.
	sh.mu.Lock()
	sh.seq.Add(1)
	done := make(chan bool)
	go func() {
		done <- sh.find(b) != 0
	}()
	select {
	case <-done:
		t.Fatal("find returned while a removal was in progress")
	case <-time.After(20 * time.Millisecond):
	}
	tab := sh.tab.Load()
	home := a & tab.mask
	atomic.StoreUint64(&tab.slots[home], tab.slots[home+1])
	atomic.StoreUint64(&tab.slots[home+1], 0)
	sh.n--
	sh.seq.Add(1)
	sh.remove(b)
	sh.mu.Unlock()
	if ok := <-done; ok {
		t.Error("find found an entry removed while it waited")
	}
}

// FuzzSetAgainstMap decodes its input into adds, removes and lookups on a
// small key space, and checks a Set, and a shard whose hashes collide on
// purpose, against a map. Each op takes two bytes: the first chooses the
// op (low 2 bits: add, add, remove, lookup) and the reason (next 2 bits),
// the second the key.
func FuzzSetAgainstMap(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 2, 1, 3, 1, 3, 2})
	f.Add([]byte{0, 0, 4, 0, 8, 0, 3, 0, 2, 0, 3, 0})
	seq := make([]byte, 0, 400)
	for i := range 100 {
		seq = append(seq, byte(i%4)|byte(i%16)<<2, byte(i*37))
	}
	f.Add(seq)
	reasons := []string{"", "opt_out", "abuse", "invalid_token"}
	platforms := []string{"", IOS, Android}
	f.Fuzz(func(t *testing.T, ops []byte) {
		s := newSet(0)
		var sh shard
		ref := make(map[byte]string) // key -> reason
		for len(ops) >= 2 {
			op, x := ops[0], ops[1]
			ops = ops[2:]
			kind, platform := Token, platforms[x%3]
			if platform == "" {
				kind = User
			}
			value := strconv.Itoa(int(x / 3))
			h := collidingHash(uint64(x)+1, 5)
			switch op & 3 {
			case 0, 1:
				reason := reasons[op>>2&3]
				s.Add(kind, platform, value, reason)
				sh.add(h, op>>2&3)
				ref[x] = reason
			case 2:
				_, want := ref[x]
				if got := s.Remove(kind, platform, value); got != want {
					t.Fatalf("Set.Remove(%d) = %v, want %v", x, got, want)
				}
				if got := sh.remove(h); got != want {
					t.Fatalf("shard.remove(%d) = %v, want %v", x, got, want)
				}
				delete(ref, x)
			case 3:
				want, wantOK := ref[x]
				if r, ok := s.Lookup(kind, platform, value); ok != wantOK || r != want {
					t.Fatalf("Set.Lookup(%d) = %q, %v; want %q, %v", x, r, ok, want, wantOK)
				}
				w := sh.find(h)
				ok := w != 0
				if ok != wantOK || (ok && reasons[uint8(w)] != want) {
					t.Fatalf("shard.find(%d) = %#x, %v; want %q, %v", x, w, ok, want, wantOK)
				}
			}
		}
		if s.Len() != len(ref) || sh.n != len(ref) {
			t.Fatalf("Len() = %d, shard n = %d; want %d", s.Len(), sh.n, len(ref))
		}
		checkShard(t, &sh)
		checkShard(t, &s.shards[0])
		for x := range 256 {
			kind, platform := Token, platforms[x%3]
			if platform == "" {
				kind = User
			}
			want, wantOK := ref[byte(x)]
			if r, ok := s.Lookup(kind, platform, strconv.Itoa(x/3)); ok != wantOK || r != want {
				t.Fatalf("at the end: Set.Lookup(%d) = %q, %v; want %q, %v", x, r, ok, want, wantOK)
			}
		}
	})
}
