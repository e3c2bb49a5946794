package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Prepared statements. The store prepares its frequent statements once, when
// it opens, instead of letting SQLite compile them again on every call
// (compiling was 13–18 % of the gateway's CPU under load). A *sql.Stmt of a
// pool prepares itself on each connection of the pool as it first runs
// there; inside a transaction, tx.StmtContext reuses the connection's
// prepared statement.

// Queries, written once with "?" placeholders (see dialect.rebind).
const (
	qGetOrder = `SELECT ` + orderCols + ` FROM orders WHERE mch_id = ? AND out_trade_no = ?`
	// qOrdersToCheck reads the unpaid orders due for a check (index
	// orders_unpaid_check: its condition is written out, not bound, for
	// the planner to see that the index covers the query).
	qOrdersToCheck = `SELECT ` + orderCols + ` FROM orders
		WHERE state = '` + OrderNotPay + `' AND next_check_at > 0 AND next_check_at <= ? ORDER BY next_check_at LIMIT ?`
	// qPutOrderHead (with the dialect's insert-if-absent clause) inserts an
	// order if its key is new (RowsAffected 0 if not).
	qPutOrderHead = `INSERT INTO orders (` + orderCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qReplaceOrder = `UPDATE orders SET app_id = ?, trade_type = ?, total_fee = ?, content_hash = ?,
		prepay_id = ?, code_url = ?, mweb_url = ?, state = ?, created_at = ?, expires_at = ?, updated_at = ?,
		next_check_at = ?, checks = ?
		WHERE mch_id = ? AND out_trade_no = ?`
	qSetOrderState = `UPDATE orders SET state = ?, updated_at = ? WHERE mch_id = ? AND out_trade_no = ?`
	// qSetRefundState: parameters state, updated at, refund_id twice ("":
	// keep the one recorded), mch_id, out_refund_no.
	qSetRefundState = `UPDATE refunds SET state = ?, updated_at = ?,
		refund_id = CASE WHEN ? = '' THEN refund_id ELSE ? END WHERE mch_id = ? AND out_refund_no = ?`

	qInsertEventHead = `INSERT INTO events (` + eventCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, '` + EventPending + `', 0, ?, 0, 0, '', '')`
	qGetEvent     = `SELECT ` + eventCols + ` FROM events WHERE id = ?`
	qGetAttempts  = `SELECT event_id, attempted_at, duration_ns, status, error, response FROM attempts WHERE event_id = ? ORDER BY n`
	qEventCreated = `SELECT created_at FROM events WHERE id = ?`
	qReplay       = `UPDATE events SET state = '` + EventPending + `', next_attempt_at = ?, delivered_at = 0 WHERE id = ?`

	// qNextDue walks the pending events by due time (index events_due_order)
	// and stops at the first that is first of its order.
	qNextDue = `SELECT e.next_attempt_at FROM events e
		WHERE e.state = '` + EventPending + `' AND ` + firstOfOrder + `
		ORDER BY e.next_attempt_at LIMIT 1`

	// qInsertAttempt appends an attempt, numbered after the event's
	// attempts so far; it inserts nothing if the event is absent:
	// parameters at, duration, status, error, response, id.
	qInsertAttempt = `INSERT INTO attempts (event_id, n, attempted_at, duration_ns, status, error, response)
		SELECT id, attempts + 1, ?, ?, ?, ?, ? FROM events WHERE id = ?`
	// qAttemptEvent then applies the attempt's outcome to its event:
	// parameters status, error, response, state, state again, next attempt
	// (used only when the new state is pending: a delivered or dead event
	// keeps its last schedule), delivered at, id.
	qAttemptEvent = `UPDATE events SET attempts = attempts + 1, last_status = ?, last_error = ?, last_response = ?,
		state = ?, next_attempt_at = CASE WHEN ? = '` + EventPending + `' THEN ? ELSE next_attempt_at END, delivered_at = ?
		WHERE id = ?`
)

// firstOfOrder holds for a pending event e when no older (by created_at,
// then id) event of its order is pending. With the partial index
// events_pending_order (mch_id, out_trade_no, created_at, id) it is one
// index probe (the range created_at <= e's, in which e itself is the usual
// only row).
const firstOfOrder = `NOT EXISTS (SELECT 1 FROM events o
	WHERE o.mch_id = e.mch_id AND o.out_trade_no = e.out_trade_no AND o.state = '` + EventPending + `'
	AND o.created_at <= e.created_at AND (o.created_at < e.created_at OR o.id < e.id))`

// dueShapes are the sizes of the exclude lists DueEvents has prepared
// statements for: a list is padded (with empty IDs, which no event has) up
// to the next size, so that the few shapes the delivery worker uses are
// compiled once. Longer lists get a statement of their own, compiled per
// call.
var dueShapes = [...]int{0, 8, 16, 32, 64, 128}

// dueQuery is DueEvents' query with n placeholders in its exclude list:
// parameters the list (when n > 0), then now. The orders of the excluded
// events are looked up once (a materialized CTE: n primary-key probes) and
// every event of them is skipped, the excluded ones included. The query
// has no LIMIT: the caller stops reading (the rows come in index order, one
// step at a time). A LIMIT ? would make SQLite compile the statement again
// whenever the bound limit changes (its planner reads the value).
func dueQuery(d dialect, n int) string {
	var b strings.Builder
	if n > 0 {
		b.WriteString(`WITH held AS ` + d.materialized + ` (SELECT mch_id, out_trade_no FROM events WHERE id IN (` + placeholders(n) + `)) `)
	}
	b.WriteString(`SELECT ` + eventColsE + ` FROM events e
		WHERE e.state = '` + EventPending + `' AND e.next_attempt_at <= ? AND ` + firstOfOrder)
	if n > 0 {
		b.WriteString(` AND NOT EXISTS (SELECT 1 FROM held h WHERE h.mch_id = e.mch_id AND h.out_trade_no = e.out_trade_no)`)
	}
	// Earliest due first: a retried event waits behind events due before
	// it, so a few failing events cannot starve the rest.
	b.WriteString(` ORDER BY e.next_attempt_at, e.created_at, e.id`)
	return b.String()
}

// stmts are the store's prepared statements, each on the pool that runs it.
type stmts struct {
	// fast pool (reads)
	getOrder, getEvent, getAttempts, eventCreated, nextDue *sql.Stmt
	due                                                    [len(dueShapes)]*sql.Stmt
	// durable pool (the writer connection)
	insertEvent, replay                   *sql.Stmt
	putOrder, replaceOrder, setOrderState *sql.Stmt
	setRefundState                        *sql.Stmt
	getOrderW                             *sql.Stmt
	dueW                                  [len(dueShapes)]*sql.Stmt
	attemptEvent, insertAttempt           *sql.Stmt
	orderKeysSince                        *sql.Stmt // nil without the order-key filter

	all []*sql.Stmt
}

// prepare prepares every statement; on an error it closes those prepared.
func (s *sqlStore) prepare(ctx context.Context) (err error) {
	st := &s.st
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	p := func(db *sql.DB, dst **sql.Stmt, q string) {
		if err != nil {
			return
		}
		var x *sql.Stmt
		x, err = db.PrepareContext(ctx, s.d.rebind(q))
		if err != nil {
			err = fmt.Errorf("ledger: prepare %.60q: %w", strings.Join(strings.Fields(q), " "), err)
			return
		}
		*dst = x
		st.all = append(st.all, x)
	}
	f, d := s.fast, s.durable
	p(f, &st.getOrder, qGetOrder)
	p(f, &st.getEvent, qGetEvent)
	p(f, &st.getAttempts, qGetAttempts)
	p(f, &st.eventCreated, qEventCreated)
	p(f, &st.nextDue, qNextDue)
	for i, n := range dueShapes {
		p(f, &st.due[i], dueQuery(s.d, n))
	}
	p(d, &st.insertEvent, qInsertEventHead+s.d.insertIgnore("id"))
	p(d, &st.replay, qReplay)
	p(d, &st.getOrderW, qGetOrder)
	for i, n := range dueShapes {
		p(d, &st.dueW[i], dueQuery(s.d, n))
	}
	p(d, &st.putOrder, qPutOrderHead+s.d.insertIgnore("mch_id, out_trade_no"))
	p(d, &st.replaceOrder, qReplaceOrder)
	p(d, &st.setOrderState, qSetOrderState)
	p(d, &st.setRefundState, qSetRefundState)
	p(d, &st.attemptEvent, qAttemptEvent)
	p(d, &st.insertAttempt, qInsertAttempt)
	if s.keys != nil {
		p(d, &st.orderKeysSince, qOrderKeysSince)
	}
	return err
}

func (st *stmts) close() error {
	var errs []error
	for _, x := range st.all {
		errs = append(errs, x.Close())
	}
	st.all = nil
	return errors.Join(errs...)
}
