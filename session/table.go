package session

import (
	"sync/atomic"
)

// tableShards is the number of independently copied shards of a Table. A
// write copies one shard (len/4096 entries), so adding a participant stays
// O(1) in practice even with 150,000 flows (10,000 meetings of 5, 3 kinds):
// about 40 entries per shard. Reads pick the shard from the key's hash.
const tableShards = 4096

// Table is a hash map from K to V with lock-free reads and copy-on-write
// writes: each shard is an immutable Go map published through an
// atomic.Pointer. Get is safe for concurrent use with everything and does
// not allocate. Put and Delete must be serialised by the caller (the
// Registry's mutex); a reader sees each write entirely or not at all.
type Table[K comparable, V any] struct {
	hash   func(K) uint64
	shards [tableShards]atomic.Pointer[map[K]V]
	n      atomic.Int64
}

// NewTable returns an empty table that places keys by hash.
func NewTable[K comparable, V any](hash func(K) uint64) *Table[K, V] {
	return &Table[K, V]{hash: hash}
}

func (t *Table[K, V]) shard(k K) *atomic.Pointer[map[K]V] {
	return &t.shards[t.hash(k)%tableShards]
}

// Get returns the value stored for k.
func (t *Table[K, V]) Get(k K) (V, bool) {
	m := t.shard(k).Load()
	if m == nil {
		var zero V
		return zero, false
	}
	v, ok := (*m)[k]
	return v, ok
}

// Put stores v for k. Callers serialise writers.
func (t *Table[K, V]) Put(k K, v V) {
	s := t.shard(k)
	old := s.Load()
	var m map[K]V
	if old == nil {
		m = make(map[K]V, 1)
	} else {
		m = make(map[K]V, len(*old)+1)
		for kk, vv := range *old {
			m[kk] = vv
		}
	}
	if _, exists := m[k]; !exists {
		t.n.Add(1)
	}
	m[k] = v
	s.Store(&m)
}

// Delete removes k. Callers serialise writers.
func (t *Table[K, V]) Delete(k K) {
	s := t.shard(k)
	old := s.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[k]; !ok {
		return
	}
	m := make(map[K]V, len(*old))
	for kk, vv := range *old {
		if kk != k {
			m[kk] = vv
		}
	}
	t.n.Add(-1)
	s.Store(&m)
}

// Len returns the number of entries.
func (t *Table[K, V]) Len() int { return int(t.n.Load()) }
