// Package lists indexes pushd's blacklist and whitelist in memory and
// decides, for each recipient, whether the lists rule it out.
//
// An Entry names a user id, or a device as a (platform, token) pair, with a
// reason. A Set is the in-memory index of one list: a sharded open-addressing
// hash table of 8-byte words, each the 56 low bits of a 64-bit hash of the
// entry's key and a one-byte reason code, with a blocked Bloom filter of one
// byte a slot in front of each shard's table. Nearly every recipient is in
// neither list, and the filter answers most of those lookups without reading
// the table. A lookup takes constant time, does not allocate and takes no
// lock (readers follow a seqlock), so many goroutines filter recipients at
// once while a writer applies a change. Ten million entries take about
// 151 MB of heap: 134 MB of table and 17 MB of filter (BenchmarkLookup10M
// reports it as heap-MB).
//
// The Set keeps hashes, not the entries: two entries whose 64-bit hashes
// are equal count as one. The chance that a lookup of a recipient who is not
// in a list of n entries answers yes is about n/2^64: 5.4e-13 for ten
// million entries, or one wrongly filtered recipient in about 1.8e12
// lookups. Each Set draws its own random hash seeds, so such a collision is
// not repeated by other instances or after a reload. Set says more, and how
// reasons are stored.
//
// Lists holds both lists of an instance. Load builds them from a Source (the
// store) and Run follows the Source's change log, so that a change made on
// any instance reaches every instance within about a second (Poke makes it
// at once on the instance that made it). Filter applies the rule of the
// design: the blacklist always wins, by user id or by (platform, token); in
// test mode (a test campaign, or an instance in whitelist-only mode) only
// whitelisted recipients pass.
//
// ReadCSV and CSVWriter import and export a list as CSV with the columns
// kind, value, platform, reason.
//
// The package is not for:
//   - keeping the lists: the store does (it implements Source); a Set
//     forgets everything but hashes, and cannot list its entries.
//   - deciding what to do with a filtered recipient, counting it or
//     reporting it: the dispatcher does.
//   - validating recipients: a token's format is checked where batches are
//     decoded; Filter only answers whether a list rules a recipient out.
//
// It imports nothing from pushd.
package lists
