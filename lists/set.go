package lists

import (
	"encoding/binary"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// A Set is the in-memory index of one list: it answers whether a (kind,
// platform, value) is in the list and with which reason, in constant time
// and without allocating. It is safe for concurrent use: lookups take no
// lock and are not held up by writers, and writers lock only the one of
// 256 shards they change. Its zero value is not usable: call NewSet.
//
// A Set does not keep the entries themselves, only a 64-bit hash of each
// (8 bits choose the shard, 56 are stored) and a one-byte reason code, in
// an 8-byte word of a table that doubles when it would be more than three
// quarters full, plus a Bloom filter of one byte a slot in front of it:
// 12 to 24 bytes an entry, about 151 MB for 10 million entries. The hash
// is hash/maphash, with seeds each Set draws at random.
//
// # False positives
//
// Two different entries with the same 64-bit hash are one entry to a Set:
// a lookup of a key that is not in a set of n entries answers yes, with the
// reason of the entry it collides with, with probability n/2^64 (5.4e-13
// with 10 million entries: one wrongly filtered recipient in about 1.8e12
// lookups; 2.7e-14 with 500,000). Adding an entry that collides with one
// already there replaces that entry's reason, and removing either removes
// both. Each Set draws new seeds, so a collision in one instance or before
// a reload is not repeated in another or after it.
//
// # Reasons
//
// A Set stores reasons as codes of its own: "" and "other" (ReasonOther),
// plus the first 254 distinct other reasons it is given. An entry added
// with a further reason is stored with reason "other". The lists hold a
// handful of reasons (opt_out, invalid_token, abuse, test_device...), so
// this is no limit in practice; a Set never loses an entry because of it,
// only the wording of its reason.
//
// A Set grows as entries are added and does not shrink when they are
// removed; a reload (see Lists) builds a new one.
type Set struct {
	seeds   [nSeeds]maphash.Seed
	shift   uint // a hash's shard is hash >> shift
	shards  []shard
	len     atomic.Int64
	reasons reasons
}

// ReasonOther is the reason a Set returns for an entry added with a reason
// it had no room left to remember (see Set).
const ReasonOther = "other"

// Seeds of the hash, one per class of key, so that the common keys are
// hashed with a single maphash.String call and keys of different classes
// never hash alike except by chance.
const (
	seedUser = iota
	seedIOS
	seedAndroid
	seedOther // any other (kind, platform): both are hashed in
	nSeeds
)

const (
	// defaultShardBits gives 256 shards: writers lock one shard at a
	// time, and growing one copies a 256th of the table.
	defaultShardBits = 8
	// minSlots is the size of a shard's table when it gets its first
	// entry.
	minSlots = 8
	// keyBits of a word hold the hash (its low 56 bits; the other 8
	// choose the shard), the low 8 bits hold the reason code.
	keyBits  = 56
	keyMask  = 1<<keyBits - 1
	cacheLen = 128 // bytes; keeps shards' locks on distinct cache lines
)

// NewSet returns an empty Set.
func NewSet() *Set { return newSet(defaultShardBits) }

// newSet returns an empty Set of 2^bits shards (0 <= bits <= 8). Tests use
// a single shard to get dense tables and long probe sequences.
func newSet(bits uint) *Set {
	s := &Set{shift: 64 - bits, shards: make([]shard, 1<<bits)}
	for i := range s.seeds {
		s.seeds[i] = maphash.MakeSeed()
	}
	s.reasons.init()
	return s
}

// Add adds an entry to the set, or changes its reason if it is already
// there. See Set for what happens to reasons past the 254th.
func (s *Set) Add(kind Kind, platform, value, reason string) {
	h := s.hash(kind, platform, value)
	code := s.reasons.code(reason)
	sh := &s.shards[h>>s.shift]
	sh.mu.Lock()
	added := sh.add(h, code)
	sh.mu.Unlock()
	if added {
		s.len.Add(1)
	}
}

// Remove removes an entry from the set and reports whether it was there.
func (s *Set) Remove(kind Kind, platform, value string) bool {
	h := s.hash(kind, platform, value)
	sh := &s.shards[h>>s.shift]
	sh.mu.Lock()
	removed := sh.remove(h)
	sh.mu.Unlock()
	if removed {
		s.len.Add(-1)
	}
	return removed
}

// Lookup reports whether an entry is in the set and, if it is, its reason.
// It does not allocate. See Set for the odds of a false positive.
func (s *Set) Lookup(kind Kind, platform, value string) (reason string, ok bool) {
	h := s.hash(kind, platform, value)
	w := s.shards[h>>s.shift].find(h)
	// No branch on w: a miss is word 0, whose code 0 is reason "".
	return s.reasons.names[uint8(w)], w != 0
}

// Len returns the number of entries in the set.
func (s *Set) Len() int { return int(s.len.Load()) }

// hash returns the 64-bit hash of a key. Token entries of the two
// platforms and user entries, the only keys of valid entries, take one
// maphash.String call with a seed of their own; other keys hash their kind
// and platform in too.
func (s *Set) hash(kind Kind, platform, value string) uint64 {
	var seed maphash.Seed
	switch {
	case kind == Token && platform == IOS:
		seed = s.seeds[seedIOS]
	case kind == Token && platform == Android:
		seed = s.seeds[seedAndroid]
	case kind == User && platform == "":
		seed = s.seeds[seedUser]
	default:
		return s.hashOther(kind, platform, value)
	}
	return maphash.String(seed, value)
}

// hashOther hashes a key of an unusual kind or platform. Lengths go first
// so that ("ab", "c") and ("a", "bc") differ.
func (s *Set) hashOther(kind Kind, platform, value string) uint64 {
	var h maphash.Hash // on the stack: no allocation
	h.SetSeed(s.seeds[seedOther])
	var n [16]byte
	binary.LittleEndian.PutUint64(n[:8], uint64(len(kind)))
	binary.LittleEndian.PutUint64(n[8:], uint64(len(platform)))
	h.Write(n[:])
	h.WriteString(string(kind))
	h.WriteString(platform)
	h.WriteString(value)
	return h.Sum64()
}

// shardFields is a shard without its padding.
type shardFields struct {
	// mu serializes the writers of the shard. Readers do not take it
	// (see find).
	mu sync.Mutex
	// seq is odd while a removal moves entries within the table.
	seq atomic.Uint64
	// tab is the shard's table, nil until its first entry. Growing
	// replaces it; the table it replaces is never written again.
	tab atomic.Pointer[table]
	n   int // slots in use, at most 3/4 of the table; guarded by mu
	// removed counts removals since the filter was last built; guarded
	// by mu.
	removed int
}

// shard is one lock's worth of a Set, padded to its own cache lines.
type shard struct {
	shardFields
	_ [cacheLen - unsafe.Sizeof(shardFields{})%cacheLen]byte
}

// A table is an open-addressing hash table with linear probing, a power
// of two long. A slot holds 0 when free, else key<<8 | reason code, where
// key is the low 56 bits of the entry's hash, never 0 (see keyOf). A
// key's home slot is key & mask; every slot from an entry's home slot to
// its own is in use, which deletion by backward shift keeps true without
// tombstones. Slots are read and written with atomic operations so that
// readers need no lock.
//
// In front of the slots a table keeps a blocked Bloom filter of one byte a
// slot (64-byte blocks, 4 bits a key): most lookups are of recipients that
// are not listed, and the filter, 8 times smaller than the slots, answers
// most of them without the cache miss into the slots (see find). The filter
// never forgets a key that is in the table; removed keys stay in it until
// the shard rebuilds it (see shard.remove).
type table struct {
	slots []uint64
	mask  uint64
	bloom []uint64 // 8-word blocks
	bmask uint64   // blocks - 1
}

// Bloom filter geometry: 4 bits per key in a 512-bit block; the block and
// the bits come from disjoint bits of the key, remixed.
const (
	bloomBlockWords = 8
	bloomMix        = 0x9E3779B97F4A7C15
)

func newTable(size int) *table {
	blocks := max(1, size/64) // one byte a slot
	return &table{
		slots: make([]uint64, size), mask: uint64(size - 1),
		bloom: make([]uint64, blocks*bloomBlockWords), bmask: uint64(blocks - 1),
	}
}

// withBloom returns a table over the same slots with a fresh filter of the
// keys they hold now. The caller holds the shard's lock.
func (t *table) withBloom() *table {
	n := &table{slots: t.slots, mask: t.mask, bloom: make([]uint64, len(t.bloom)), bmask: t.bmask}
	for _, w := range t.slots {
		if w != 0 {
			n.bloomAdd(w >> 8)
		}
	}
	return n
}

// bloomAdd sets the filter bits of key k.
func (t *table) bloomAdd(k uint64) {
	x := k * bloomMix
	blk := t.bloom[((x>>36)&t.bmask)*bloomBlockWords:][:bloomBlockWords]
	for j := range 4 {
		p := (x >> (9 * j)) & 511
		atomic.OrUint64(&blk[p>>6], 1<<(p&63))
	}
}

// mayContain reports whether key k may be in the table: false is certain.
func (t *table) mayContain(k uint64) bool {
	x := k * bloomMix
	blk := t.bloom[((x>>36)&t.bmask)*bloomBlockWords:][:bloomBlockWords]
	var miss uint64
	for j := range 4 {
		p := (x >> (9 * j)) & 511
		miss |= ^atomic.LoadUint64(&blk[p>>6]) >> (p & 63) & 1
	}
	return miss == 0
}

// keyOf returns the part of hash h that a table stores: its low 56 bits,
// with 0 (which marks a free slot) taken as 1.
func keyOf(h uint64) uint64 {
	k := h & keyMask
	return k + b2u(k == 0)
}

// find returns the word holding key k, or 0 if there is none. It reads
// two slots at a time and decides without branching which of them, if
// any, ends the search: that keeps the branch the CPU must guess to one
// that is nearly always "stop here", so that it can run ahead into the
// next lookups while this one waits for memory.
func (t *table) find(k uint64) uint64 {
	slots, mask := t.slots, t.mask
	i := k & mask
	for n := 0; n < len(slots); n += 2 {
		w0 := atomic.LoadUint64(&slots[i])
		w1 := atomic.LoadUint64(&slots[(i+1)&mask])
		m0 := -b2u(w0>>8 == k) // all ones if w0 holds k
		m1 := -b2u(w1>>8 == k)
		// An entry is never past a free slot from its home, so a free
		// slot or k ends the search.
		if m0|m1|b2u(w0 == 0)|b2u(w1 == 0) != 0 {
			return w0&m0 | w1&m1
		}
		i = (i + 2) & mask
	}
	return 0 // only with a torn read, which the caller retries
}

// b2u returns 1 for true and 0 for false, without a branch.
func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// optimisticReads is how many times find reads a shard without its lock
// before it takes the lock.
const optimisticReads = 4

// find returns the word holding hash h, or 0. It reads the table without the
// lock, as a seqlock reader: inserting into a free slot, changing a reason
// and growing are single atomic stores that readers may see or not, but
// a removal moves entries, and a reader that overlapped one reads again.
// Readers thus write no shared memory and run no locked instruction,
// which lets the CPU overlap the cache misses of successive lookups.
func (sh *shard) find(h uint64) uint64 {
	k := keyOf(h)
	for range optimisticReads {
		seq := sh.seq.Load()
		t := sh.tab.Load()
		if t == nil || !t.mayContain(k) {
			// The filter has every key of the table, whatever a removal
			// is moving: a miss is certain.
			return 0
		}
		w := t.find(k)
		if seq&1 == 0 && sh.seq.Load() == seq {
			return w
		}
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.tab.Load().find(k)
}

// add stores hash h with a reason code, replacing the code if h is there,
// and reports whether h is new. The caller holds sh.mu.
func (sh *shard) add(h uint64, code uint8) bool {
	if t := sh.tab.Load(); t == nil || (sh.n+1)*4 > len(t.slots)*3 {
		sh.grow()
	}
	t := sh.tab.Load()
	k := keyOf(h)
	for i := k & t.mask; ; i = (i + 1) & t.mask {
		w := t.slots[i] // only writers write; they hold sh.mu
		if w == 0 {
			t.bloomAdd(k) // before the slot: a reader never sees the slot without its bits
			atomic.StoreUint64(&t.slots[i], k<<8|uint64(code))
			sh.n++
			return true
		}
		if w>>8 == k {
			atomic.StoreUint64(&t.slots[i], k<<8|uint64(code))
			return false
		}
	}
}

// grow replaces the table with one twice as large (or makes the first
// one). The caller holds sh.mu.
func (sh *shard) grow() {
	size := minSlots
	old := sh.tab.Load()
	if old != nil {
		size = 2 * len(old.slots)
	}
	t := newTable(size)
	if old != nil {
		for _, w := range old.slots {
			if w == 0 {
				continue
			}
			i := (w >> 8) & t.mask
			for t.slots[i] != 0 {
				i = (i + 1) & t.mask
			}
			t.slots[i] = w
			t.bloomAdd(w >> 8)
		}
	}
	sh.removed = 0
	sh.tab.Store(t)
}

// remove deletes hash h and reports whether it was there. The entries
// after it in its run are shifted back so that each can still be reached
// from its home slot. The caller holds sh.mu.
func (sh *shard) remove(h uint64) bool {
	t := sh.tab.Load()
	if t == nil {
		return false
	}
	k := keyOf(h)
	slots, mask := t.slots, t.mask
	i := k & mask
	for ; ; i = (i + 1) & mask {
		w := slots[i]
		if w == 0 {
			return false
		}
		if w>>8 == k {
			break
		}
	}
	sh.seq.Add(1) // odd: readers that overlap this will read again
	// slots[i] is the hole. An entry further on may move into it if the
	// hole lies between its home slot and its slot.
	for j := (i + 1) & mask; slots[j] != 0; j = (j + 1) & mask {
		home := (slots[j] >> 8) & mask
		if (i-home)&mask < (j-home)&mask {
			atomic.StoreUint64(&slots[i], slots[j])
			i = j
		}
	}
	atomic.StoreUint64(&slots[i], 0)
	sh.seq.Add(1)
	sh.n--
	// Removed keys stay in the filter; once they are a quarter of what it
	// holds, rebuild it so that misses stay cheap.
	if sh.removed++; sh.removed*4 > sh.n+minSlots {
		sh.tab.Store(t.withBloom())
		sh.removed = 0
	}
	return true
}

// reasons interns the reasons of a Set as one-byte codes.
type reasons struct {
	mu    sync.Mutex
	codes map[string]uint8 // guarded by mu
	next  int              // the next free code; guarded by mu
	// names[c] is the reason of code c. An element is written once,
	// under mu, before its code is stored in a table with an atomic
	// store; Lookup reads it after loading the code, so it needs no lock.
	names [256]string
}

const (
	codeNone  = 0   // reason ""
	codeOther = 255 // ReasonOther, and every reason past the first 254
)

func (r *reasons) init() {
	r.codes = map[string]uint8{ReasonOther: codeOther}
	r.names[codeOther] = ReasonOther
	r.next = 1
}

// code returns the code of a reason, giving it one if it is new and there
// is room.
func (r *reasons) code(reason string) uint8 {
	if reason == "" {
		return codeNone
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.codes[reason]; ok {
		return c
	}
	if r.next == codeOther {
		return codeOther
	}
	c := uint8(r.next)
	r.next++
	reason = strings.Clone(reason) // do not keep the caller's buffer alive
	r.names[c] = reason
	r.codes[reason] = c
	return c
}
