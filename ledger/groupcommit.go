package ledger

import (
	"context"
	"database/sql"
	"fmt"
)

// Group commit. RecordEvent hands its event to one committer goroutine. The
// committer takes a request, then every other request already waiting (up
// to maxBatch) without waiting for more, and stores them all in one
// transaction: one commit, one fsync, however many notifications arrived
// while the previous commit was on its way to disk. Under no load a batch is
// a single event and costs what a transaction of its own would.

// recordReq is one RecordEvent call waiting for the committer.
type recordReq struct {
	ctx        context.Context
	e          *Event
	orderState string
	resp       chan recordResp // buffered (1): the committer never blocks on it
}

type recordResp struct {
	created bool
	err     error
}

// submit is RecordEvent with group commit.
func (s *sqlStore) submit(ctx context.Context, e *Event, orderState string) (bool, error) {
	ev := *e
	req := &recordReq{ctx: ctx, e: &ev, orderState: orderState, resp: make(chan recordResp, 1)}
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

// committer runs until Close.
func (s *sqlStore) committer() {
	defer close(s.done)
	batch := make([]*recordReq, 0, s.maxBatch)
	for {
		select {
		case <-s.closing:
			return
		case r := <-s.reqs:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// commitBatch stores batch in one transaction and answers every request.
// If the transaction fails, nothing of it is stored and every request gets
// the error.
func (s *sqlStore) commitBatch(batch []*recordReq) {
	live := make([]*recordReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil { // the caller has gone
			r.resp <- recordResp{err: fmt.Errorf("ledger: record event %s: %w", r.e.ID, err)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if s.beforeBatch != nil {
		s.beforeBatch(len(live))
	}
	created := make([]bool, len(live))
	// The batch is not any one caller's: it runs to its end (bounded by
	// the busy timeout) even if callers give up, so that what they are
	// told is what happened.
	ctx := context.Background()
	err := withTx(ctx, s.durable, func(tx *sql.Tx) error {
		for i, r := range live {
			c, err := s.insertEvent(ctx, tx, r.e, r.orderState)
			if err != nil {
				return fmt.Errorf("event %s: %w", r.e.ID, err)
			}
			created[i] = c
		}
		return nil
	})
	if err == nil {
		s.eventTxs.Add(1)
	}
	for i, r := range live {
		if err != nil {
			r.resp <- recordResp{err: fmt.Errorf("ledger: record event %s (batch of %d): %w", r.e.ID, len(live), err)}
			continue
		}
		r.resp <- recordResp{created: created[i]}
	}
}
