package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"
)

// Group commit. RecordEvent hands its event to one committer goroutine. The
// committer takes a request, then every other request already waiting (up
// to maxBatch) without waiting for more, and stores them all in one
// transaction: one commit, one fsync, however many notifications arrived
// while the previous commit was on its way to disk. Under no load a batch is
// a single event and costs what a transaction of its own would.
//
// The same committer takes the store's other frequent writes (PutOrder,
// ReplaceOrder, SetOrderState, RecordAttempt; see writeq.go) into the same
// transactions, on the same connection: a batch with events commits with
// synchronous=FULL, a batch without with NORMAL (no fsync). One writer
// connection keeps its page cache across batches (SQLite drops a
// connection's cache whenever another connection has written), and SQLite
// allows one writer at a time on the file anyway.

// recordReq is one RecordEvent call waiting for the committer.
type recordReq struct {
	ctx    context.Context
	e      *Event
	change Change
	resp   chan recordResp // buffered (1): the committer never blocks on it
}

type recordResp struct {
	created bool
	err     error
}

// submit is RecordEvent with group commit. The committer reads e only:
// what it stores was written into e by eventDefaults before.
func (s *sqlStore) submit(ctx context.Context, e *Event, change Change) (bool, error) {
	req := &recordReq{ctx: ctx, e: e, change: change, resp: make(chan recordResp, 1)}
	// s.reqs is unbuffered: once the send succeeds the committer holds the
	// request and will answer it, whatever happens next.
	select {
	case s.reqs <- req:
	case <-s.closing:
		return false, fmt.Errorf("ledger: record event %s: %w", e.ID, ErrClosed)
	case <-ctx.Done():
		return false, fmt.Errorf("ledger: record event %s: %w", e.ID, ctx.Err())
	}
	select {
	case r := <-req.resp:
		return r.created, r.err
	case <-ctx.Done():
		// The batch may still commit; a retried notification then finds
		// the event (created=false) and its delivery goes on.
		return false, fmt.Errorf("ledger: record event %s: %w", e.ID, ctx.Err())
	}
}

// committer runs until Close. It takes a request (an event, or another
// write), then every other request already waiting (up to maxBatch of
// either kind), and commits them in one transaction.
func (s *sqlStore) committer() {
	defer close(s.done)
	evs := make([]*recordReq, 0, s.maxBatch)
	ops := make([]*writeReq, 0, s.maxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	b := &batchState{
		created: make([]bool, 0, s.maxBatch),
		answers: make([]error, 0, s.maxBatch),
		reads:   make([]*writeReq, 0, s.maxBatch),
		t:       &fastTx{ctx: context.Background(), s: s, bound: map[*sql.Stmt]*sql.Stmt{}},
	}
	for {
		select {
		case <-s.closing:
			return
		case r := <-s.reqs:
			evs = append(evs, r)
		case r := <-s.wreqs:
			ops = append(ops, r)
		}
	drain:
		for len(evs) < s.maxBatch && len(ops) < s.maxBatch {
			select {
			case r := <-s.reqs:
				evs = append(evs, r)
			case r := <-s.wreqs:
				ops = append(ops, r)
			default:
				break drain
			}
		}
		closing := false
		if len(evs) == 0 && s.linger > 0 && hasWrite(ops) {
			evs, ops, closing = s.lingerFor(b, linger, evs, ops)
		}
		s.commitBatch(b, evs, ops)
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
func hasWrite(ops []*writeReq) bool {
	for _, r := range ops {
		if !r.read {
			return true
		}
	}
	return false
}

// lingerFor waits up to s.linger for more writes to join a batch of writes
// without events (which costs no fsync, so that its commit, not the disk,
// is what a batch saves: begin, commit and the WAL frames of the pages it
// dirties, several of which the orders of one batch share). Reads that
// arrive meanwhile are answered at once, outside any transaction (no write
// of the batch is visible yet, and none is owed to them); an event ends
// the wait (its fsync will dominate). It reports closing if Close came: the
// batch is committed and the committer returns.
func (s *sqlStore) lingerFor(b *batchState, timer *time.Timer, evs []*recordReq, ops []*writeReq) ([]*recordReq, []*writeReq, bool) {
	timer.Reset(s.linger)
	defer timer.Stop()
	writes := 0
	for _, r := range ops {
		if !r.read {
			writes++
		}
	}
	for writes < lingerMax && len(ops) < s.maxBatch {
		select {
		case <-s.closing:
			return evs, ops, true
		case r := <-s.reqs:
			return append(evs, r), ops, false
		case r := <-s.wreqs:
			if r.read {
				if err := r.ctx.Err(); err != nil {
					r.resp <- err
					continue
				}
				s.wmu.Lock()
				r.resp <- r.op(b.t)
				s.wmu.Unlock()
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
	created []bool
	answers []error
	reads   []*writeReq
	t       *fastTx
}

// commitBatch stores evs and ops in one transaction and answers every
// request. The reads among ops run first, on the state committed so far,
// and are answered at once, before the commit: they see no write of this
// batch, so its fate is not theirs (and they do not wait for its fsync).
// The transaction commits with synchronous=FULL (fsynced) when it holds
// events, NORMAL otherwise; reads alone run without one (each in its own
// implicit read transaction). If it fails, nothing of it is stored and
// every event gets the error; the other writes, which do not share the
// events' fate, are then tried again in a transaction of their own.
func (s *sqlStore) commitBatch(b *batchState, evs []*recordReq, ops []*writeReq) {
	evs = slices.DeleteFunc(evs, func(r *recordReq) bool {
		if err := r.ctx.Err(); err != nil { // the caller has gone
			r.resp <- recordResp{err: fmt.Errorf("ledger: record event %s: %w", r.e.ID, err)}
			return true
		}
		return false
	})
	reads := b.reads[:0]
	defer func() { clear(reads) }()
	ops = slices.DeleteFunc(ops, func(r *writeReq) bool {
		if err := r.ctx.Err(); err != nil {
			r.resp <- err
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
	if len(evs) > 0 && s.beforeBatch != nil {
		s.beforeBatch(len(evs))
	}
	created := b.created[:len(evs)]
	answers := b.answers[:max(len(ops), len(reads))]
	defer clear(answers)
	// The batch is not any one caller's: it runs to its end (bounded by
	// the busy timeout) even if callers give up, so that what they are
	// told is what happened.
	ctx := context.Background()
	if len(evs) == 0 && len(ops) == 0 {
		// Reads only: no transaction (each runs in its own implicit one).
		s.wmu.Lock()
		if s.keys != nil {
			_ = s.keys.catchUp(ctx, s.st.orderKeysSince) // on error the filter stops answering
		}
		for _, r := range reads {
			r.resp <- r.op(b.t)
		}
		s.wmu.Unlock()
		return
	}
	level := syncNormal
	if len(evs) > 0 {
		level = syncFull
	}
	readsDone := false
	err := s.writeTx(ctx, level, func(tx *sql.Tx) error {
		if s.keys != nil {
			// First, so that the filter takes in what other processes
			// committed; on an error it stops answering, the batch goes on.
			_ = s.keys.catchUp(ctx, tx.StmtContext(ctx, s.st.orderKeysSince))
		}
		if len(reads) > 0 {
			_ = b.t.run(tx, reads, answers) // reads: every error is its caller's answer
			for i, r := range reads {
				r.resp <- answers[i]
			}
			readsDone = true
		}
		if len(evs) > 0 {
			etx := s.eventTx(ctx, tx)
			for i, r := range evs {
				c, err := s.insertEvent(ctx, etx, r.e, r.change)
				if err != nil {
					return fmt.Errorf("event %s: %w", r.e.ID, err)
				}
				created[i] = c
			}
		}
		return b.t.run(tx, ops, answers)
	})
	if !readsDone { // the transaction did not begin
		for _, r := range reads {
			r.resp <- err
		}
	}
	if err == nil {
		if len(evs) > 0 {
			s.eventTxs.Add(1)
		}
		if len(ops) > 0 {
			s.writeTxs.Add(1)
		}
	}
	for i, r := range evs {
		if err != nil {
			r.resp <- recordResp{err: fmt.Errorf("ledger: record event %s (batch of %d): %w", r.e.ID, len(evs), err)}
			continue
		}
		r.resp <- recordResp{created: created[i]}
	}
	if err != nil && len(evs) > 0 && len(ops) > 0 {
		err = s.writeTx(ctx, syncNormal, func(tx *sql.Tx) error { return b.t.run(tx, ops, answers) })
		if err == nil {
			s.writeTxs.Add(1)
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
