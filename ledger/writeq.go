package ledger

import (
	"context"
	"database/sql"
	"fmt"
)

// The store's frequent writes other than events: PutOrder, ReplaceOrder,
// SetOrderState and RecordAttempt hand their write to the committer (see
// groupcommit.go), which runs every write waiting (up to maxBatch) in one
// transaction, together with the events waiting, if any. Without events
// the transaction commits with synchronous=NORMAL: no fsync. Each caller
// still waits for the commit of its write and gets its own answer:
// ErrExists for an order key that exists (the insert skips the row,
// RowsAffected 0), ErrNotFound for an absent row. If the transaction
// itself fails, every write of the batch gets the error and none is
// stored.
//
// Every write transaction of the store (the committer's, and the few
// writes that run on their own) takes the store's write mutex: SQLite
// allows one writer at a time on the file, and a writer that finds the
// lock taken sleeps in its busy handler (1 ms, 2 ms, 5 ms, …) instead of
// being handed the lock. Queuing in Go hands it over at once.

// writeOp is one write, run inside the batch's transaction. ErrExists and
// ErrNotFound (unwrapped) are its caller's answer and the batch goes on;
// any other error fails the transaction.
type writeOp func(t *fastTx) error

// ownAnswer reports whether err, returned by a writeOp, is its caller's
// answer rather than a failure of the transaction.
func ownAnswer(err error) bool { return err == nil || err == ErrExists || err == ErrNotFound }

// writeReq is one write (or read) waiting for the committer.
type writeReq struct {
	ctx  context.Context
	op   writeOp
	read bool       // op only reads: any error it returns is its answer
	resp chan error // buffered (1): the committer never blocks on it
}

// fastTx is a batch's transaction with its statements, bound to the
// transaction as they are first used. Without a transaction (tx nil: reads
// outside one) the statements run as they are, on the writer connection.
type fastTx struct {
	ctx context.Context
	tx  *sql.Tx
	s   *sqlStore
	// bound statements, by the store's statement
	bound map[*sql.Stmt]*sql.Stmt
}

func (t *fastTx) stmt(st *sql.Stmt) *sql.Stmt {
	if t.tx == nil {
		return st
	}
	if b, ok := t.bound[st]; ok {
		return b
	}
	b := t.tx.StmtContext(t.ctx, st)
	t.bound[st] = b
	return b
}

// run runs ops in tx, their answers into answers; it returns the error
// that fails the transaction, if any.
func (t *fastTx) run(tx *sql.Tx, ops []*writeReq, answers []error) error {
	t.tx = tx
	defer func() {
		t.tx = nil
		clear(t.bound)
	}()
	for i, r := range ops {
		a := r.op(t)
		if !r.read && !ownAnswer(a) {
			return a
		}
		answers[i] = a
	}
	return nil
}

// read runs op, which only reads, through the committer, in the
// transaction of the next batch, before its writes (see commitBatch).
func (s *sqlStore) read(ctx context.Context, op writeOp) error {
	return s.submitOp(ctx, &writeReq{ctx: ctx, op: op, read: true, resp: make(chan error, 1)})
}

// write runs op: through the committer (group commit), or in a transaction
// of its own when the store was opened without it.
func (s *sqlStore) write(ctx context.Context, op writeOp) error {
	if !s.groupFast {
		var answer error
		err := s.writeTx(ctx, syncNormal, func(tx *sql.Tx) error {
			t := &fastTx{ctx: ctx, s: s, bound: map[*sql.Stmt]*sql.Stmt{}}
			answers := []error{nil}
			err := t.run(tx, []*writeReq{{op: op}}, answers)
			answer = answers[0]
			return err
		})
		if err != nil {
			return err
		}
		return answer
	}
	return s.submitOp(ctx, &writeReq{ctx: ctx, op: op, resp: make(chan error, 1)})
}

// submitOp hands req to the committer and waits for its answer.
func (s *sqlStore) submitOp(ctx context.Context, req *writeReq) error {
	// s.wreqs is unbuffered: once the send succeeds the committer holds
	// the request and will answer it.
	select {
	case s.wreqs <- req:
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.resp:
		return err
	case <-ctx.Done():
		// The batch may still commit.
		return ctx.Err()
	}
}

// writeTx runs fn in a transaction of the writer connection (s.durable)
// under the write mutex, committing with synchronous set to level.
func (s *sqlStore) writeTx(ctx context.Context, level string, fn func(tx *sql.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.setSync(ctx, level); err != nil {
		return err
	}
	return withTx(ctx, s.durable, fn)
}

// setSync sets the writer connection's synchronous level, if it is not
// already (PRAGMA synchronous cannot change inside a transaction). Called
// with wmu held. The pool has one connection; a connection it opens anew
// starts at FULL (the DSN's), so the level is never lower than s.sync
// says. (Not a prepared statement: SQLite applies this pragma when it
// compiles it.)
func (s *sqlStore) setSync(ctx context.Context, level string) error {
	if s.sync == level {
		return nil
	}
	if _, err := s.durable.ExecContext(ctx, "PRAGMA synchronous = "+level); err != nil {
		s.sync = "" // unknown: set it again next time
		return fmt.Errorf("set synchronous %s: %w", level, err)
	}
	s.sync = level
	return nil
}
