package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Group commit. The SQLite engine hands the ledger's durable writes
// (events, replays) to one committer goroutine. The committer takes a
// request, then every other request already waiting (up to maxBatch)
// without waiting for more, and runs them all in one transaction: one
// commit, one fsync, however many notifications arrived while the previous
// commit was on its way to disk. Under no load a batch is a single event
// and costs what a transaction of its own would.
//
// The same committer takes the other frequent writes (orders, delivery
// attempts) into the same transactions, on the same connection: a batch
// with durable writes commits with synchronous=FULL, a batch without with
// NORMAL (no fsync). And it answers the reads of GetOrder and DueEvents on
// that connection, whose page cache it keeps warm (SQLite drops a
// connection's cache whenever another connection has written); SQLite
// allows one writer at a time on the file anyway.
//
// Every write transaction of the engine (the committer's, and the few
// writes that run on their own) takes the engine's write mutex: a SQLite
// writer that finds the lock taken sleeps in its busy handler (1 ms, 2 ms,
// 5 ms, …) instead of being handed the lock. Queuing in Go hands it over at
// once.

// submit hands op to the committer on ch and waits for its answer.
func (e *sqliteEngine) submit(ctx context.Context, ch chan *opReq, op txOp, read bool) error {
	return submitOp(ctx, ch, e.closing, &e.reqPool, op, read, false)
}

// committer runs until close. It takes a request (a durable write, or
// another op), then every other request already waiting (up to maxBatch
// of either kind), and commits them in one transaction.
func (e *sqliteEngine) committer() {
	defer close(e.done)
	evs := make([]*opReq, 0, e.maxBatch)
	ops := make([]*opReq, 0, e.maxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	b := &batchState{
		answers:   make([]error, 0, e.maxBatch),
		evAnswers: make([]error, 0, e.maxBatch),
		reads:     make([]*opReq, 0, e.maxBatch),
		t:         newTxn(context.Background(), e.durable),
	}
	for {
		select {
		case <-e.closing:
			return
		case r := <-e.reqs:
			evs = append(evs, r)
		case r := <-e.wreqs:
			ops = append(ops, r)
		}
	drain:
		for len(evs) < e.maxBatch && len(ops) < e.maxBatch {
			select {
			case r := <-e.reqs:
				evs = append(evs, r)
			case r := <-e.wreqs:
				ops = append(ops, r)
			default:
				break drain
			}
		}
		closing := false
		if len(evs) == 0 && e.linger > 0 && hasWrite(ops) {
			evs, ops, closing = e.lingerFor(b, linger, evs, ops)
		}
		e.commitBatch(b, evs, ops)
		clear(evs)
		clear(ops)
		evs, ops = evs[:0], ops[:0]
		if closing {
			return
		}
	}
}

// lingerMax ends a linger once this many writes wait.
const lingerMax = 32

// hasWrite reports whether ops hold a write (not only reads).
func hasWrite(ops []*opReq) bool {
	for _, r := range ops {
		if !r.read {
			return true
		}
	}
	return false
}

// lingerFor waits up to e.linger for more writes to join a batch of writes
// without durable ones (which costs no fsync, so that its commit, not the
// disk, is what a batch saves: begin, commit and the WAL frames of the
// pages it dirties, several of which the orders of one batch share). Reads
// that arrive meanwhile are answered at once, outside any transaction (no
// write of the batch is visible yet, and none is owed to them); a durable
// write ends the wait (its fsync will dominate). It reports closing if
// close came: the batch is committed and the committer returns.
func (e *sqliteEngine) lingerFor(b *batchState, timer *time.Timer, evs, ops []*opReq) ([]*opReq, []*opReq, bool) {
	timer.Reset(e.linger)
	defer timer.Stop()
	writes := 0
	for _, r := range ops {
		if !r.read {
			writes++
		}
	}
	for writes < lingerMax && len(ops) < e.maxBatch {
		select {
		case <-e.closing:
			return evs, ops, true
		case r := <-e.reqs:
			return append(evs, r), ops, false
		case r := <-e.wreqs:
			if r.read {
				if err := r.ctx.Err(); err != nil {
					r.resp <- err
					continue
				}
				e.wmu.Lock()
				r.resp <- r.op(b.t)
				e.wmu.Unlock()
				continue
			}
			ops = append(ops, r)
			writes++
		case <-timer.C:
			return evs, ops, false
		}
	}
	return evs, ops, false
}

// batchState is the committer's reusable scratch space.
type batchState struct {
	answers   []error // of the other ops and the reads
	evAnswers []error // of the durable writes
	reads     []*opReq
	t         *txn
}

// run runs ops in tx, their answers into answers; it returns the error
// that fails the transaction, if any (a read's errors are its own).
func (b *batchState) run(tx *sql.Tx, ops []*opReq, answers []error) error {
	b.t.enter(tx)
	defer b.t.leave()
	for i, r := range ops {
		a := r.op(b.t)
		if !r.read && !ownAnswer(a) {
			return a
		}
		answers[i] = a
	}
	return nil
}

// commitBatch runs evs (durable writes) and ops in one transaction and
// answers every request. The reads among ops run first, on the state
// committed so far, and are answered at once, before the commit: they see
// no write of this batch, so its fate is not theirs (and they do not wait
// for its fsync). The transaction commits with synchronous=FULL (fsynced)
// when it holds durable writes, NORMAL otherwise; reads alone run without
// one (each in its own implicit read transaction). If it fails, nothing of
// it is stored and every durable write gets the error; the other writes,
// which do not share their fate, are then tried again in a transaction of
// their own.
func (e *sqliteEngine) commitBatch(b *batchState, evs, ops []*opReq) {
	gone := func(r *opReq) bool {
		if err := r.ctx.Err(); err != nil { // the caller has gone
			r.resp <- err
			return true
		}
		return false
	}
	evs = slices.DeleteFunc(evs, gone)
	reads := b.reads[:0]
	defer func() { clear(reads) }()
	ops = slices.DeleteFunc(ops, func(r *opReq) bool {
		if gone(r) {
			return true
		}
		if r.read {
			reads = append(reads, r)
			return true
		}
		return false
	})
	if len(evs) == 0 && len(ops) == 0 && len(reads) == 0 {
		return
	}
	if len(evs) > 0 && e.beforeBatch != nil {
		e.beforeBatch(len(evs))
	}
	answers := b.answers[:max(len(ops), len(reads))]
	defer clear(answers)
	evAnswers := b.evAnswers[:len(evs)]
	defer clear(evAnswers)
	// The batch is not any one caller's: it runs to its end (bounded by
	// the busy timeout) even if callers give up, so that what they are
	// told is what happened.
	ctx := context.Background()
	if len(evs) == 0 && len(ops) == 0 {
		// Reads only: no transaction (each runs in its own implicit one).
		e.wmu.Lock()
		if e.keys != nil {
			_, _ = e.keys.catchUp(ctx, e.orderKeysSince) // on error the filter stops answering
		}
		for _, r := range reads {
			r.resp <- r.op(b.t)
		}
		e.wmu.Unlock()
		return
	}
	level := syncNormal
	if len(evs) > 0 {
		level = syncFull
	}
	readsDone := false
	err := e.writeTx(ctx, level, b.t, func(tx *sql.Tx) error {
		b.t.own = ownOrders{}
		if e.keys != nil {
			// First, so that the filter takes in what other processes
			// committed; on an error it stops answering, the batch goes on.
			// Caught up here, it may answer the batch's ops for an order
			// the ledger surely does not hold.
			b.t.own.complete, _ = e.keys.catchUp(ctx, tx.StmtContext(ctx, e.orderKeysSince))
			b.t.absent = e.keys.absent
			defer func() { b.t.absent = nil }()
		}
		if len(reads) > 0 {
			_ = b.run(tx, reads, answers) // reads: every error is its caller's answer
			for i, r := range reads {
				r.resp <- answers[i]
			}
			readsDone = true
		}
		if err := b.run(tx, evs, evAnswers); err != nil {
			return err
		}
		return b.run(tx, ops, answers)
	})
	if !readsDone { // the transaction did not begin
		for _, r := range reads {
			r.resp <- err
		}
	}
	if err == nil {
		if len(evs) > 0 {
			e.eventTxs.Add(1)
		}
		if len(ops) > 0 {
			e.writeTxs.Add(1)
		}
	}
	for i, r := range evs {
		if err != nil {
			r.resp <- fmt.Errorf("batch of %d: %w", len(evs), err)
			continue
		}
		r.resp <- evAnswers[i]
	}
	if err != nil && len(evs) > 0 && len(ops) > 0 {
		err = e.writeTx(ctx, syncNormal, b.t, func(tx *sql.Tx) error {
			b.t.own = ownOrders{} // not caught up: its orders are read back
			return b.run(tx, ops, answers)
		})
		if err == nil {
			e.writeTxs.Add(1)
		}
	}
	for i, r := range ops {
		if err != nil {
			r.resp <- fmt.Errorf("batch of %d writes: %w", len(ops), err)
			continue
		}
		r.resp <- answers[i]
	}
}
