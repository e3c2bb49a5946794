package ledger

import (
	"context"
	"database/sql"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// The order-key filter. Every order placed through the gateway is a new
// out_trade_no, which GetOrder looks up (to answer a repeated order without
// calling WeChat) and does not find; a notification's cross-check looks up
// orders too. orderKeys answers most of those misses without SQLite: it is
// a Bloom filter of every order key in the ledger, so "not in the filter"
// means "not in the ledger", and only keys it may hold (all that are
// there, and about 1 % of the others) are read from the database.
//
// It is kept complete as follows.
//   - SQLite numbers a new row max(rowid) + 1, so the rows since a known
//     rowid are the orders inserted since. The committer, at the start of
//     each batch, reads the orders past the highest rowid it has seen (at
//     most keysChunk at a time: a large ledger is loaded over the first
//     batches after start) and adds them: this takes in the orders of
//     other processes on the same file too. The orders a batch inserts
//     itself are counted after its commit without being read back
//     (passOwn). One exception: ForgetOrder deletes the row of an order
//     WeChat refused, and when that row had the highest rowid, the next
//     insert takes its number again, at or below the watermark. This
//     process's own such insert is in the filter already (PutOrder adds
//     it). Another process's, on the same file, is missed until a
//     restart: placing that order again still finds it (the insert is
//     refused, which adds the key), but a notification of it would be
//     taken as of an order the ledger does not hold. One process per
//     SQLite file is the supported set-up (several gateways share
//     PostgreSQL, which has no filter).
//   - PutOrder adds its key as it writes it, before its caller hears
//     back, so the gateway's own orders are found at once (a key added by
//     a transaction that then fails is only a false positive).
//   - The filter answers only while it is complete (the whole table has
//     been read) and fresh (a batch caught up less than keysFresh ago).
//     Otherwise GetOrder reads through the committer, whose batch catches
//     up first. So an order inserted by another process is found at most
//     keysFresh after its commit; before that, a gateway may ask WeChat
//     about it, and WeChat refuses a reused out_trade_no itself.
//
// The filter holds about 10 bits per order (1 MB per 800,000 orders), in
// layers that double in size as the ledger grows.

const (
	// keysChunk bounds the orders one batch reads into the filter.
	keysChunk = 1024
	// keysFresh is how long after a catch-up the filter may answer.
	keysFresh = 100 * time.Millisecond
	// keysFirstLayer is the number of keys the first layer is sized for.
	keysFirstLayer = 1 << 16
	// keysBitsPerKey and keysHashes make a layer's false-positive rate
	// about 1 % when full.
	keysBitsPerKey = 10
	keysHashes     = 7
)

// qOrderKeysSince reads the orders past a rowid, in rowid order (SQLite
// only: the engine keeps it to itself).
const qOrderKeysSince = `SELECT rowid, mch_id, out_trade_no FROM orders WHERE rowid > ? ORDER BY rowid LIMIT 1024`

type orderKeys struct {
	seed  maphash.Seed
	epoch time.Time // for monotonic freshness stamps

	mu     sync.RWMutex
	layers []*bloomLayer

	// watermark is the highest orders rowid added. Read and written under
	// the engine's write mutex only (the committer's batches, the writes
	// that run on their own).
	watermark int64

	// checked is when (since epoch, ns) the last catch-up that read to the
	// end of the table ended; 0 while the filter is behind the table.
	checked atomic.Int64
	// fresh is how long after a catch-up the filter answers (ns):
	// keysFresh; tests set it to take the wall clock out of their checks.
	fresh atomic.Int64
	// answered counts the lookups the filter answered, read counts the
	// rows catch-ups read (tests, benchmarks).
	answered, read atomic.Int64
}

func newOrderKeys() *orderKeys {
	k := &orderKeys{seed: maphash.MakeSeed(), epoch: time.Now(), layers: []*bloomLayer{newBloomLayer(keysFirstLayer)}}
	k.fresh.Store(int64(keysFresh))
	return k
}

func (k *orderKeys) hash(mchID, outTradeNo string) uint64 {
	var h maphash.Hash
	h.SetSeed(k.seed)
	h.WriteString(mchID)
	h.WriteByte(0)
	h.WriteString(outTradeNo)
	return h.Sum64()
}

// add puts a key in the filter. counted: the key comes from the table (its
// count sizes the layers); PutOrder's own adds are counted when the
// catch-up reads their rows.
func (k *orderKeys) add(mchID, outTradeNo string, counted bool) {
	h := k.hash(mchID, outTradeNo)
	k.mu.Lock()
	defer k.mu.Unlock()
	top := k.layers[len(k.layers)-1]
	top.set(h)
	if counted {
		top.n++
		if top.n >= top.capacity {
			k.layers = append(k.layers, newBloomLayer(2*top.capacity))
		}
	}
}

// mayHold reports whether the filter may hold the key (false: it is not in
// the ledger, if the filter is complete).
func (k *orderKeys) mayHold(mchID, outTradeNo string) bool {
	h := k.hash(mchID, outTradeNo)
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, l := range k.layers {
		if l.has(h) {
			return true
		}
	}
	return false
}

// absent reports whether the key is surely not in the ledger: the filter
// is complete, fresh, and does not hold it.
func (k *orderKeys) absent(mchID, outTradeNo string) bool {
	c := k.checked.Load()
	if c == 0 || int64(time.Since(k.epoch))-c > k.fresh.Load() {
		return false
	}
	if k.mayHold(mchID, outTradeNo) {
		return false
	}
	k.answered.Add(1)
	return true
}

// catchUp adds the orders past the watermark, at most keysChunk of them,
// read with st (qOrderKeysSince, bound to the batch's transaction or on
// the writer connection), under the engine's write mutex, and reports
// whether it read to the table's end. On an error the filter stops
// answering until a catch-up succeeds.
func (k *orderKeys) catchUp(ctx context.Context, st *sql.Stmt) (bool, error) {
	// Freshness counts from before the read: what it reads is the table as
	// it was then, or later.
	start := max(int64(time.Since(k.epoch)), 1)
	rows, err := st.QueryContext(ctx, k.watermark)
	if err != nil {
		k.checked.Store(0)
		return false, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		var mchID, outTradeNo string
		if err := rows.Scan(&id, &mchID, &outTradeNo); err != nil {
			k.checked.Store(0)
			return false, err
		}
		k.add(mchID, outTradeNo, true)
		k.watermark = id
		n++
		k.read.Add(1)
	}
	if err := rows.Err(); err != nil {
		k.checked.Store(0)
		return false, err
	}
	if n == keysChunk {
		// More to read (a ledger being loaded, or a burst of another
		// process's orders): not caught up until a batch reads the rest.
		k.checked.Store(0)
		return false, nil
	}
	k.checked.Store(start)
	return true, nil
}

// passOwn takes in the orders a committed transaction inserted after a
// catch-up that read the table to its end: SQLite numbers each new row
// max(rowid)+1 and the transaction held the database's write lock, so n
// inserts whose last rowid is the watermark + n took exactly the rowids
// after it (a row deleted meanwhile, whose number an insert took again,
// leaves the last rowid lower). They are in the filter already (PutOrder
// adds its key as it writes); here they are counted and the watermark
// passes them, so that no batch reads them back. Anything else is left to
// the next catch-up. Under the engine's write mutex.
func (k *orderKeys) passOwn(own ownOrders) {
	if !own.complete || own.n == 0 || own.last != k.watermark+int64(own.n) {
		return
	}
	k.watermark = own.last
	k.mu.Lock()
	defer k.mu.Unlock()
	top := k.layers[len(k.layers)-1]
	top.n += own.n
	if top.n >= top.capacity {
		k.layers = append(k.layers, newBloomLayer(2*top.capacity))
	}
}

// bloomLayer is one Bloom filter, sized for capacity keys.
type bloomLayer struct {
	bits     []uint64
	m        uint64 // number of bits
	capacity int
	n        int // keys counted in
}

func newBloomLayer(capacity int) *bloomLayer {
	m := uint64(capacity) * keysBitsPerKey
	m = (m + 63) &^ 63
	return &bloomLayer{bits: make([]uint64, m/64), m: m, capacity: capacity}
}

// The keysHashes bit positions of h: double hashing (Kirsch and
// Mitzenmacher), h1 + i·h2.
func (l *bloomLayer) set(h uint64) {
	h1, h2 := h, h>>32|h<<32|1
	for i := uint64(0); i < keysHashes; i++ {
		b := (h1 + i*h2) % l.m
		l.bits[b/64] |= 1 << (b % 64)
	}
}

func (l *bloomLayer) has(h uint64) bool {
	h1, h2 := h, h>>32|h<<32|1
	for i := uint64(0); i < keysHashes; i++ {
		b := (h1 + i*h2) % l.m
		if l.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}
