package ledger

import (
	"context"
	"database/sql"
	"sync"
)

// engine is a database as the ledger runs on it: its connections, its
// transactions and their durability, how concurrent writes share them.
// The ledger (store.go) says what to run — its queries, scans and
// migrations are written once, for every engine, with a dialect for what
// differs — and an engine says how. sqliteEngine (sqlite.go) is the
// embedded one; a database is added by implementing this interface and
// opening it in Open.
type engine interface {
	// prepare prepares a query (already in the engine's dialect) for the
	// engine's connections.
	prepare(ctx context.Context, query string) (*stmt, error)

	// write runs op in a write transaction, which the engine may share
	// with other callers' writes (group commit). durable: the
	// transaction is on stable storage when write returns nil (events,
	// replays); otherwise the engine may commit it without waiting for
	// the disk (orders, delivery attempts; see RecordAttempt). op's own
	// answers (ErrExists, ErrNotFound, unwrapped) are returned to its
	// caller alone; any other error of op's fails the transaction, and
	// every op in it gets that error and none is stored.
	write(ctx context.Context, op txOp, durable bool) error
	// read runs op, which only reads, on a state that includes every
	// write that returned before read was called. op's errors are its
	// own.
	read(ctx context.Context, op txOp) error
	// exec runs one infrequent write on its own (leases, order checks,
	// refunds), committed without waiting for the disk.
	exec(ctx context.Context, query string, args ...any) (sql.Result, error)
	// reader is the pool for the reads that need no particular state
	// (listing and counting events, the orders to check, refunds).
	reader() *sql.DB
	// bound bounds ctx by the engine's own limit on one operation, if
	// it has one (PostgreSQL's query timeout), for the reads on reader.
	bound(ctx context.Context) (context.Context, context.CancelFunc)

	// orderAbsent reports whether the engine knows, without asking the
	// database, that the ledger holds no such order (SQLite keeps a
	// filter of the order keys); false when it does not know.
	orderAbsent(mchID, outTradeNo string) bool
	// orderWritten tells the engine, inside a write's op, that an order
	// with this key is in the ledger (inserted, or found there).
	orderWritten(mchID, outTradeNo string)
	// filtersOrders reports whether orderAbsent ever answers true.
	filtersOrders() bool

	// shared reports whether several processes may use the database at
	// once (PostgreSQL): the outbox is then claimed (DueEvents marks the
	// events it returns as taken until a lease expires). A database of
	// one process (SQLite) has its worker's in-flight list for that.
	shared() bool

	// close stops the engine (writes not yet taken fail with ErrClosed)
	// and closes its connections.
	close() error
}

// txOp is one piece of work of the ledger inside a transaction (or, for a
// read, on a connection).
type txOp func(t *txn) error

// ownAnswer reports whether err, returned by an op, is its caller's answer
// rather than a failure of the transaction.
func ownAnswer(err error) bool {
	if err == nil || err == ErrExists || err == ErrNotFound || err == ErrOrderHeld || err == ErrOrderNotHeld {
		return true
	}
	_, mismatch := err.(*MismatchError)
	return mismatch
}

// stmt is a prepared statement on each pool of an engine that runs it: an
// engine with one pool sets both to the same statement.
type stmt struct {
	writer *sql.Stmt // on the connection(s) that write
	reader *sql.Stmt // on the pool for reads
}

// txn is where an op runs: a transaction, or (tx nil) a connection
// outside one, on the writer's side or the reader's.
type txn struct {
	ctx      context.Context
	tx       *sql.Tx
	db       *sql.DB // the pool the txn runs on outside a transaction
	onReader bool
	// absent, when set by the engine, answers for an order key the
	// ledger surely does not hold as of this transaction (SQLite's
	// order-key filter, caught up at the start of the committer's
	// batch); nil: ask the database.
	absent func(mchID, outTradeNo string) bool
	// bound statements of this transaction, by the prepared statement:
	// the first few in an array, the rest (rare) in a map
	few  [6]boundStmt
	nfew int
	more map[*sql.Stmt]*sql.Stmt
	// own counts the orders this transaction inserted, for SQLite's
	// order-key filter (orderKeys.passOwn).
	own ownOrders
}

// ownOrders are the orders one transaction inserted: how many, and the
// rowid of the last; complete says the order-key filter read the table to
// its end at the transaction's start (else nothing is counted).
type ownOrders struct {
	complete bool
	n        int
	last     int64
}

// orderInserted counts an order the transaction inserted (res is the
// insert's result); passOwn decides what the count proves.
func (t *txn) orderInserted(res sql.Result) {
	if !t.own.complete {
		return
	}
	id, err := res.LastInsertId()
	if err != nil {
		t.own.complete = false
		return
	}
	t.own.n++
	t.own.last = id
}

type boundStmt struct{ prepared, bound *sql.Stmt }

func newTxn(ctx context.Context, db *sql.DB) *txn {
	return &txn{ctx: ctx, db: db}
}

// stmt is st on this txn's pool, bound to its transaction if any.
func (t *txn) stmt(st *stmt) *sql.Stmt {
	s := st.writer
	if t.onReader {
		s = st.reader
	}
	if t.tx == nil {
		return s
	}
	for _, b := range t.few[:t.nfew] {
		if b.prepared == s {
			return b.bound
		}
	}
	if b, ok := t.more[s]; ok {
		return b
	}
	b := t.tx.StmtContext(t.ctx, s)
	if t.nfew < len(t.few) {
		t.few[t.nfew] = boundStmt{s, b}
		t.nfew++
	} else {
		if t.more == nil {
			t.more = map[*sql.Stmt]*sql.Stmt{}
		}
		t.more[s] = b
	}
	return b
}

// query runs a query that is not prepared (its shape varies) where the
// txn runs.
func (t *txn) query(q string, args ...any) (*sql.Rows, error) {
	if t.tx != nil {
		return t.tx.QueryContext(t.ctx, q, args...)
	}
	return t.db.QueryContext(t.ctx, q, args...)
}

// enter makes t run in tx, until leave.
func (t *txn) enter(tx *sql.Tx) { t.tx = tx }

// leave ends t's run in its transaction and forgets its bound statements.
func (t *txn) leave() {
	t.tx = nil
	clear(t.few[:t.nfew])
	t.nfew = 0
	clear(t.more)
}

// opReq is one op waiting for an engine's committer goroutine (group
// commit).
type opReq struct {
	ctx     context.Context
	op      txOp
	read    bool       // op only reads: any error it returns is its answer
	durable bool       // op must be on stable storage when answered
	resp    chan error // buffered (1): the committer never blocks on it
}

// submitOp hands op to a committer on ch and waits for its answer; closing
// is closed when the engine closes; pool recycles the requests (and their
// answer channels), never one the committer may still answer.
func submitOp(ctx context.Context, ch chan *opReq, closing <-chan struct{}, pool *sync.Pool, op txOp, read, durable bool) error {
	req, _ := pool.Get().(*opReq)
	if req == nil {
		req = &opReq{resp: make(chan error, 1)}
	}
	req.ctx, req.op, req.read, req.durable = ctx, op, read, durable
	reuse := func() {
		req.ctx, req.op = nil, nil
		pool.Put(req)
	}
	// ch is unbuffered: once the send succeeds the committer holds the
	// request and will answer it, whatever happens next.
	select {
	case ch <- req:
	case <-closing:
		reuse()
		return ErrClosed
	case <-ctx.Done():
		reuse()
		return ctx.Err()
	}
	select {
	case err := <-req.resp:
		reuse()
		return err
	case <-ctx.Done():
		// The batch may still commit; a retried notification then finds
		// the event (created=false) and its delivery goes on. The
		// committer will answer req: it is not reused.
		return ctx.Err()
	}
}

// prepareOn prepares query on the writer and the reader pools (which may
// be the same), adding the statements to all for closing.
func prepareOn(ctx context.Context, writer, reader *sql.DB, query string, all *[]*sql.Stmt) (*stmt, error) {
	w, err := writer.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	*all = append(*all, w)
	r, err := reader.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	*all = append(*all, r)
	return &stmt{writer: w, reader: r}, nil
}
