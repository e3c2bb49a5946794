package ledger

import (
	"context"
	"fmt"
	"strings"
)

// The ledger's queries, written once for every engine with "?"
// placeholders (see dialect.rebind) in SQL that SQLite and PostgreSQL both
// understand. The frequent ones are prepared once, when the ledger opens
// (prepared statements: compiling them was 13–18 % of the gateway's CPU
// under load); the others run as they are.

const orderCols = `mch_id, out_trade_no, app_id, trade_type, total_fee, content_hash, prepay_id, code_url, mweb_url, state, created_at, expires_at, updated_at, next_check_at, checks`

const eventCols = `id, mch_id, type, out_trade_no, transaction_id, payload, created_at, state, attempts, next_attempt_at, delivered_at, last_status, last_error, last_response`

// eventColsE is eventCols qualified with the table alias e.
const eventColsE = `e.id, e.mch_id, e.type, e.out_trade_no, e.transaction_id, e.payload, e.created_at, e.state, e.attempts, e.next_attempt_at, e.delivered_at, e.last_status, e.last_error, e.last_response`

// eventReadCols are the columns scanEvent reads: eventCols and those an
// insert leaves at their defaults.
const eventReadCols = eventCols + `, replayed_at, replay_attempts`

// eventReadColsE is eventReadCols qualified with the table alias e.
const eventReadColsE = eventColsE + `, e.replayed_at, e.replay_attempts`

// openOrders are the orders that may still be paid: the reconciler checks
// them (index orders_open_check).
// A refund's state moves forward only: UNKNOWN (asked, no answer yet) 0,
// PROCESSING 1, CHANGE (abnormal: it may still succeed or close) 2,
// SUCCESS and REFUNDCLOSE 3 (final).
const (
	refundRankOfState = `(CASE state WHEN '` + RefundUnknown + `' THEN 0 WHEN '` + RefundProcessing + `' THEN 1 WHEN '` + RefundChange + `' THEN 2 ELSE 3 END)`
	refundRankOfParam = `(CASE ? WHEN '` + RefundUnknown + `' THEN 0 WHEN '` + RefundProcessing + `' THEN 1 WHEN '` + RefundChange + `' THEN 2 ELSE 3 END)`
)

const openOrders = `state IN ('` + OrderNotPay + `', '` + OrderPayError + `')`

const refundCols = `mch_id, out_refund_no, out_trade_no, transaction_id, refund_id, total_fee, refund_fee, state, created_at, updated_at`

const (
	qGetOrder = `SELECT ` + orderCols + ` FROM orders WHERE mch_id = ? AND out_trade_no = ?`
	// qOrdersToCheck reads the unpaid orders due for a check (index
	// orders_open_check: its condition is written out, not bound, for the
	// planner to see that the index covers the query).
	qOrdersToCheck = `SELECT ` + orderCols + ` FROM orders
		WHERE ` + openOrders + ` AND next_check_at > 0 AND next_check_at <= ? ORDER BY next_check_at LIMIT ?`
	// qPutOrderHead (with the dialect's insert-if-absent clause) inserts an
	// order if its key is new (RowsAffected 0 if not).
	qPutOrderHead = `INSERT INTO orders (` + orderCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// qSetPrepay records WeChat's answer to an order's placement on the
	// order recorded with that content: parameters prepay_id, code_url,
	// mweb_url, expires_at, updated_at, next_check_at, mch_id,
	// out_trade_no, content_hash. The state, creation time and checks
	// stay; the next check is taken only while the order is open (a
	// payment recorded meanwhile keeps it unscheduled).
	qSetPrepay = `UPDATE orders SET prepay_id = ?, code_url = ?, mweb_url = ?, expires_at = ?, updated_at = ?,
		next_check_at = CASE WHEN ` + openOrders + ` THEN ? ELSE next_check_at END
		WHERE mch_id = ? AND out_trade_no = ? AND content_hash = ?`
	// qForgetOrder removes an order recorded before a placement that
	// WeChat refused: only while it has that content, no prepay_id and is
	// NOTPAY.
	qForgetOrder = `DELETE FROM orders WHERE mch_id = ? AND out_trade_no = ? AND content_hash = ?
		AND prepay_id = '' AND state = '` + OrderNotPay + `'`
	// qSetOrderState moves an order's state forward only: parameters
	// state, updated at, mch_id, out_trade_no, state again. SUCCESS and
	// MISMATCH are final; NOTPAY, PAYERROR and CLOSED replace only an
	// open order.
	qSetOrderState = `UPDATE orders SET state = ?, updated_at = ? WHERE mch_id = ? AND out_trade_no = ?
		AND state NOT IN ('` + OrderPaid + `', '` + OrderMismatch + `')
		AND (? NOT IN ('` + OrderNotPay + `', '` + OrderPayError + `', '` + OrderClosed + `') OR ` + openOrders + `)`
	qOrderExists   = `SELECT 1 FROM orders WHERE mch_id = ? AND out_trade_no = ?`
	qScheduleCheck = `UPDATE orders SET next_check_at = ?, checks = ? WHERE mch_id = ? AND out_trade_no = ?`

	// qPutRefundHead (with the insert-if-absent clause) records a refund.
	qPutRefundHead = `INSERT INTO refunds (` + refundCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qGetRefund     = `SELECT ` + refundCols + ` FROM refunds WHERE mch_id = ? AND out_refund_no = ?`
	// qSetRefundState moves a refund's state forward only (see
	// refundRank): parameters state, updated at, refund_id twice ("":
	// keep the one recorded), mch_id, out_refund_no, state again.
	qSetRefundState = `UPDATE refunds SET state = ?, updated_at = ?,
		refund_id = CASE WHEN ? = '' THEN refund_id ELSE ? END WHERE mch_id = ? AND out_refund_no = ?
		AND ` + refundRankOfState + ` < 3 AND ` + refundRankOfState + ` <= ` + refundRankOfParam
	// qRefundsToSettle reads the refunds whose outcome is unknown, asked
	// for before a time, and those under way (PROCESSING), last updated
	// before another, least recently updated first.
	qRefundsToSettle = `SELECT ` + refundCols + ` FROM refunds
		WHERE (state = '` + RefundUnknown + `' AND created_at <= ?) OR (state = '` + RefundProcessing + `' AND updated_at <= ?)
		ORDER BY updated_at, created_at LIMIT ?`
	// qForgetRefund removes a refund recorded before WeChat was asked for
	// it, when WeChat refused it: only while its outcome is unknown and it
	// has no refund_id.
	qForgetRefund = `DELETE FROM refunds WHERE mch_id = ? AND out_refund_no = ? AND state = '` + RefundUnknown + `' AND refund_id = ''`

	// qInsertEventHead inserts a pending event (with the dialect's
	// insert-if-absent clause: RowsAffected 0 for a known id);
	// qInsertHeldEventHead one that is never delivered.
	qInsertEventHead = `INSERT INTO events (` + eventCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, '` + EventPending + `', 0, ?, 0, 0, '', '')`
	qInsertHeldEventHead = `INSERT INTO events (` + eventCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, '` + EventHeld + `', 0, ?, 0, 0, '', '')`
	qGetEvent     = `SELECT ` + eventReadCols + ` FROM events WHERE id = ?`
	qGetAttempts  = `SELECT event_id, attempted_at, duration_ns, status, error, response FROM attempts WHERE event_id = ? ORDER BY n`
	qEventCreated = `SELECT created_at FROM events WHERE id = ?`
	qCountEvents  = `SELECT state, COUNT(*) FROM events GROUP BY state`
	// qReplay makes an event pending again, due now, with a retry window
	// and a backoff of its own: the window starts at the replay, and the
	// backoff counts the attempts after replay_attempts (attempts keeps
	// numbering the attempts table's history).
	qReplay = `UPDATE events SET state = '` + EventPending + `', next_attempt_at = ?, delivered_at = 0, replayed_at = ?, replay_attempts = attempts WHERE id = ?`

	// qNextDue walks the pending events by due time (index events_due_order)
	// and stops at the first that is first of its order.
	qNextDue = `SELECT e.next_attempt_at FROM events e
		WHERE e.state = '` + EventPending + `' AND ` + firstOfOrder + `
		ORDER BY e.next_attempt_at LIMIT 1`

	// qInsertAttempt appends an attempt numbered n (qAttemptEvent's
	// answer): parameters id, n, at, duration, status, error, response.
	qInsertAttempt = `INSERT INTO attempts (event_id, n, attempted_at, duration_ns, status, error, response) VALUES (?, ?, ?, ?, ?, ?, ?)`
)

// qAttemptEvent counts an attempt and gives the event its outcome, and
// returns the count (which numbers the attempt), when the outcome is
// still the attempt's to give: its claim is the event's (0 where nothing
// is claimed) and the event was not replayed after it started. Taking the
// event's row lock first, it numbers two records of one event one after
// the other. Parameters: status, error, response, state, state again and
// next attempt (used only when the new state is pending: a delivered or
// dead event keeps its last schedule), delivered at; id, the attempt's
// claim, its start. No row: the event is absent, or not the attempt's
// any more (qAttemptCount then).
const qAttemptEvent = `UPDATE events SET attempts = attempts + 1, last_status = ?, last_error = ?, last_response = ?,
		state = ?, next_attempt_at = CASE WHEN ? = '` + EventPending + `' THEN ? ELSE next_attempt_at END, delivered_at = ?,
		claimed_until = 0
		WHERE id = ? AND claimed_until = ? AND replayed_at <= ? RETURNING attempts`

// qAttemptCount counts an attempt whose outcome is no longer the event's
// to take (a late record of an attempt whose claim another gateway took
// over, or that a replay overtook: what came after it stays), ends its
// claim if it still holds it, and returns the count. Parameters: the
// attempt's claim, id.
const qAttemptCount = `UPDATE events SET attempts = attempts + 1,
		claimed_until = CASE WHEN claimed_until = ? THEN 0 ELSE claimed_until END
		WHERE id = ? RETURNING attempts`

// qReleaseClaim ends an event's claim, if it is still the one given:
// parameters id, claimed_until.
const qReleaseClaim = `UPDATE events SET claimed_until = 0 WHERE id = ? AND claimed_until = ?`

// qTryLease takes or renews a lease: inserted when free, updated when it
// is the holder's or has expired; parameters name, holder, expires at,
// now.
func qTryLease(d dialect) string {
	return `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)` +
		d.upsert("name", "holder = excluded.holder, expires_at = excluded.expires_at",
			"leases.holder = excluded.holder OR leases.expires_at <= ?")
}

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
	b.WriteString(`SELECT ` + eventReadColsE + ` FROM events e
		WHERE e.state = '` + EventPending + `' AND e.next_attempt_at <= ? AND ` + firstOfOrder)
	if n > 0 {
		b.WriteString(` AND NOT EXISTS (SELECT 1 FROM held h WHERE h.mch_id = e.mch_id AND h.out_trade_no = e.out_trade_no)`)
	}
	// Earliest due first: a retried event waits behind events due before
	// it, so a few failing events cannot starve the rest.
	b.WriteString(` ORDER BY e.next_attempt_at, e.created_at, e.id`)
	return b.String()
}

// claimQuery is DueEvents' query on a shared database: the due events that
// are first of their order and not claimed, as dueQuery takes them, are
// claimed until a time and returned (in no order: the caller sorts them).
// Parameters: the exclude list (when n > 0), the claim's end, now, now
// again, the limit. The selection locks the rows it takes and skips those
// another claim has locked (dialect.skipLocked): concurrent claims take
// disjoint events, and a row claimed meanwhile fails the claimed_until
// test when it is read again under the lock.
func claimQuery(d dialect, n int) string {
	var b strings.Builder
	if n > 0 {
		b.WriteString(`WITH held AS ` + d.materialized + ` (SELECT mch_id, out_trade_no FROM events WHERE id IN (` + placeholders(n) + `)) `)
	}
	b.WriteString(`UPDATE events SET claimed_until = ? WHERE id IN (SELECT e.id FROM events e
		WHERE e.state = '` + EventPending + `' AND e.next_attempt_at <= ? AND e.claimed_until <= ? AND ` + firstOfOrder)
	if n > 0 {
		b.WriteString(` AND NOT EXISTS (SELECT 1 FROM held h WHERE h.mch_id = e.mch_id AND h.out_trade_no = e.out_trade_no)`)
	}
	b.WriteString(` ORDER BY e.next_attempt_at, e.created_at, e.id LIMIT ?` + d.skipLocked + `) RETURNING ` + eventReadCols)
	return b.String()
}

// qNextDueClaimed is qNextDue on a shared database: a claimed event falls
// due when its claim expires, if it is still pending then.
const qNextDueClaimed = `SELECT CASE WHEN e.claimed_until > e.next_attempt_at THEN e.claimed_until ELSE e.next_attempt_at END AS due
	FROM events e WHERE e.state = '` + EventPending + `' AND ` + firstOfOrder + ` ORDER BY due LIMIT 1`

// stmts are the ledger's prepared statements.
type stmts struct {
	getOrder, putOrder, setPrepay, forgetOrder *stmt
	setOrderState                              *stmt
	setRefundState, getRefund                  *stmt
	insertEvent, insertHeldEvent, replay       *stmt
	getEvent, getAttempts, orderExists         *stmt
	eventCreated, nextDue                      *stmt
	due                                        [len(dueShapes)]*stmt // claims, on a shared database
	insertAttempt, attemptEvent, attemptCount  *stmt
}

// prepare prepares every statement on e.
func (st *stmts) prepare(ctx context.Context, d dialect, e engine) (err error) {
	due, nextDue := dueQuery, qNextDue
	if e.shared() {
		due, nextDue = claimQuery, qNextDueClaimed
	}
	p := func(dst **stmt, q string) {
		if err != nil {
			return
		}
		if *dst, err = e.prepare(ctx, d.rebind(q)); err != nil {
			err = fmt.Errorf("ledger: prepare %.60q: %w", strings.Join(strings.Fields(q), " "), err)
		}
	}
	p(&st.getOrder, qGetOrder)
	p(&st.putOrder, qPutOrderHead+d.insertIgnore("mch_id, out_trade_no"))
	p(&st.setPrepay, qSetPrepay)
	p(&st.forgetOrder, qForgetOrder)
	p(&st.setOrderState, qSetOrderState)
	p(&st.setRefundState, qSetRefundState)
	p(&st.getRefund, qGetRefund)
	p(&st.insertEvent, qInsertEventHead+d.insertIgnore("id"))
	p(&st.insertHeldEvent, qInsertHeldEventHead+d.insertIgnore("id"))
	p(&st.orderExists, qOrderExists)
	p(&st.replay, qReplay)
	p(&st.getEvent, qGetEvent)
	p(&st.getAttempts, qGetAttempts)
	p(&st.eventCreated, qEventCreated)
	p(&st.nextDue, nextDue)
	for i, n := range dueShapes {
		p(&st.due[i], due(d, n))
	}
	p(&st.insertAttempt, qInsertAttempt)
	p(&st.attemptEvent, qAttemptEvent)
	p(&st.attemptCount, qAttemptCount)
	return err
}
