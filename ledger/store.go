package ledger

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// sqlStore implements Store: the ledger's queries, scans and rules, the
// same on every database. It knows a database only by its dialect and runs
// everything through its engine (engine.go).
type sqlStore struct {
	d   dialect
	e   engine
	st  stmts
	now func() time.Time

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// newStore prepares the ledger's statements on e; on an error it closes e.
func newStore(ctx context.Context, d dialect, e engine) (*sqlStore, error) {
	s := &sqlStore{d: d, e: e, now: time.Now}
	if err := s.st.prepare(ctx, d, e); err != nil {
		_ = e.close()
		return nil, err
	}
	return s, nil
}

// txStarter is a pool (*sql.DB) or one of its connections (*sql.Conn).
type txStarter interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// withTx runs fn in a transaction of db, committing if it returns nil.
func withTx(ctx context.Context, db txStarter, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// toNs and fromNs convert times to the stored integer Unix nanoseconds; the
// zero time is 0.
func toNs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNs(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// clip cuts s to MaxResponse bytes at a rune boundary and makes it valid
// text in any database (invalid UTF-8 and NUL become U+FFFD).
func clip(s string) string {
	n := MaxResponse
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
		for len(s) > MaxResponse {
			_, size := utf8.DecodeLastRuneInString(s)
			s = s[:len(s)-size]
		}
	}
	return s
}

func (s *sqlStore) checkOpen() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// execOne runs st and returns ifNone when it affected no row.
func execOne(ctx context.Context, st *sql.Stmt, ifNone error, args ...any) error {
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		return err
	}
	return oneRow(res, ifNone)
}

// oneRow returns ifNone when res affected no row.
func oneRow(res sql.Result, ifNone error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ifNone
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

// ---- orders ----

func (s *sqlStore) orderDefaults(o *Order) error {
	if o == nil || o.MchID == "" || o.OutTradeNo == "" {
		return errors.New("mch_id and out_trade_no are required")
	}
	if o.State == "" {
		o.State = OrderNotPay
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = s.now().UTC()
	}
	if o.ExpiresAt.IsZero() {
		o.ExpiresAt = o.CreatedAt.Add(2 * time.Hour)
	}
	if o.UpdatedAt.IsZero() {
		o.UpdatedAt = o.CreatedAt
	}
	return nil
}

func orderArgs(o *Order) []any {
	return []any{o.MchID, o.OutTradeNo, o.AppID, o.TradeType, o.TotalFee, o.ContentHash,
		o.PrepayID, o.CodeURL, o.MWebURL, o.State, toNs(o.CreatedAt), toNs(o.ExpiresAt), toNs(o.UpdatedAt), toNs(o.NextCheckAt), o.Checks}
}

// insertOrder inserts an order (args: orderArgs) in t; ErrExists when
// its key is taken.
func (s *sqlStore) insertOrder(t *txn, args []any) error {
	res, err := t.stmt(s.st.putOrder).ExecContext(t.ctx, args...)
	if err != nil {
		return err
	}
	if err := oneRow(res, ErrExists); err != nil {
		return err
	}
	t.orderInserted(res)
	return nil
}

func (s *sqlStore) PutOrder(ctx context.Context, o *Order) error {
	if err := s.orderDefaults(o); err != nil {
		return fmt.Errorf("ledger: put order: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("ledger: put order %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	args := orderArgs(o)
	if err := s.e.write(ctx, func(t *txn) error {
		err := s.insertOrder(t, args)
		if err == nil || err == ErrExists {
			// Before the caller hears back: a GetOrder that follows
			// must not be answered "absent".
			s.e.orderWritten(o.MchID, o.OutTradeNo)
		}
		return err
	}, false); err != nil {
		return fmt.Errorf("ledger: put order %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	return nil
}

func (s *sqlStore) RecordPrepay(ctx context.Context, o *Order) error {
	if err := s.orderDefaults(o); err != nil {
		return fmt.Errorf("ledger: record prepay: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("ledger: record prepay %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	set := []any{o.PrepayID, o.CodeURL, o.MWebURL, toNs(o.ExpiresAt), toNs(o.UpdatedAt), toNs(o.NextCheckAt),
		o.MchID, o.OutTradeNo, o.ContentHash}
	if err := s.e.write(ctx, func(t *txn) error {
		err := execOne(t.ctx, t.stmt(s.st.setPrepay), ErrNotFound, set...)
		if err != ErrNotFound {
			return err
		}
		// Absent (forgotten meanwhile), or recorded with other content.
		err = s.insertOrder(t, orderArgs(o))
		if err == nil {
			s.e.orderWritten(o.MchID, o.OutTradeNo)
		}
		return err
	}, false); err != nil {
		return fmt.Errorf("ledger: record prepay %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	return nil
}

func (s *sqlStore) ForgetOrder(ctx context.Context, mchID, outTradeNo, contentHash string) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("ledger: forget order %s/%s: %w", mchID, outTradeNo, err)
	}
	if err := s.e.write(ctx, func(t *txn) error {
		_, err := t.stmt(s.st.forgetOrder).ExecContext(t.ctx, mchID, outTradeNo, contentHash)
		return err
	}, false); err != nil {
		return fmt.Errorf("ledger: forget order %s/%s: %w", mchID, outTradeNo, err)
	}
	return nil
}

func (s *sqlStore) MayHoldOrder(mchID, outTradeNo string) bool {
	return !s.e.orderAbsent(mchID, outTradeNo)
}

func (s *sqlStore) PredictsOrders() bool { return s.e.filtersOrders() }

func (s *sqlStore) GetOrder(ctx context.Context, mchID, outTradeNo string) (*Order, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: get order %s/%s: %w", mchID, outTradeNo, err)
	}
	if s.e.orderAbsent(mchID, outTradeNo) {
		return nil, fmt.Errorf("ledger: get order %s/%s: %w", mchID, outTradeNo, ErrNotFound)
	}
	// (o is read only once the engine has answered: the op keeps its
	// error to itself.)
	var o *Order
	err := s.e.read(ctx, func(t *txn) error {
		got, err := scanOrder(t.stmt(s.st.getOrder).QueryRowContext(t.ctx, mchID, outTradeNo))
		o = got
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: get order %s/%s: %w", mchID, outTradeNo, err)
	}
	return o, nil
}

// scanOrder reads an order (ErrNotFound if r has no row).
func scanOrder(r rowScanner) (*Order, error) {
	var o Order
	var created, expires, updated, next int64
	err := r.Scan(&o.MchID, &o.OutTradeNo, &o.AppID, &o.TradeType, &o.TotalFee, &o.ContentHash, &o.PrepayID, &o.CodeURL, &o.MWebURL,
		&o.State, &created, &expires, &updated, &next, &o.Checks)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	o.CreatedAt, o.ExpiresAt, o.UpdatedAt, o.NextCheckAt = fromNs(created), fromNs(expires), fromNs(updated), fromNs(next)
	return &o, nil
}

func (s *sqlStore) SetOrderState(ctx context.Context, mchID, outTradeNo, state string, now time.Time) error {
	err := s.checkOpen()
	if err == nil && state == "" {
		err = errors.New("empty state")
	}
	if now.IsZero() {
		now = s.now().UTC()
	}
	if err == nil {
		nowNs := toNs(now)
		err = s.e.write(ctx, func(t *txn) error {
			err := execOne(t.ctx, t.stmt(s.st.setOrderState), ErrNotFound, state, nowNs, mchID, outTradeNo, state)
			if err == ErrNotFound {
				// Absent, or a change backwards, which is not made.
				var one int
				if err := t.stmt(s.st.orderExists).QueryRowContext(t.ctx, mchID, outTradeNo).Scan(&one); err == nil {
					return nil
				}
			}
			return err
		}, false)
	}
	if err != nil {
		return fmt.Errorf("ledger: set order %s/%s state %s: %w", mchID, outTradeNo, state, err)
	}
	return nil
}

// ---- events ----

func scanEvent(r rowScanner) (*Event, error) {
	var e Event
	var created, next, delivered, replayed int64
	if err := r.Scan(&e.ID, &e.MchID, &e.Type, &e.OutTradeNo, &e.TransactionID, &e.Payload, &created, &e.State, &e.Attempts,
		&next, &delivered, &e.LastStatus, &e.LastError, &e.LastResponse, &replayed, &e.ReplayAttempts); err != nil {
		return nil, err
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	e.CreatedAt, e.NextAttemptAt, e.DeliveredAt, e.ReplayedAt = fromNs(created), fromNs(next), fromNs(delivered), fromNs(replayed)
	return &e, nil
}

// scanEvents reads up to max events (all if max is 0) from rows and
// closes them.
func scanEvents(rows *sql.Rows, max int) ([]*Event, error) {
	defer rows.Close()
	var out []*Event
	for (max == 0 || len(out) < max) && rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// eventDefaults validates e and fills in what RecordEvent stores.
func (s *sqlStore) eventDefaults(e *Event) error {
	if e == nil || e.ID == "" {
		return errors.New("event id is required")
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now().UTC()
	}
	if e.NextAttemptAt.IsZero() {
		e.NextAttemptAt = e.CreatedAt
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	e.State = EventPending
	e.Attempts = 0
	e.DeliveredAt = time.Time{}
	e.LastStatus, e.LastError, e.LastResponse = 0, "", ""
	return nil
}

// checkChange refuses a change that cannot be applied.
func checkChange(c Change) error {
	if r := c.Refund; r != nil && (r.OutRefundNo == "" || r.State == "") {
		return errors.New("a refund change needs out_refund_no and a state")
	}
	if c.PayloadIfNotHeld != nil && c.Presence != PresenceAny {
		return errors.New("a change with a payload for each presence of the order cannot require one")
	}
	return nil
}

// checkExpectations reads, inside the event's transaction, the order or
// refund the change expects figures of (or the order's state, for
// HoldIfSettled), and returns a *MismatchError when the ledger holds one
// that disagrees. orderAbsent: the ledger surely does not hold the event's
// order (the engine said so, or it was read); order: the order read, if
// any.
func (s *sqlStore) checkExpectations(t *txn, e *Event, c Change) (orderAbsent bool, order *Order, err error) {
	orderAbsent = t.absent != nil && t.absent(e.MchID, e.OutTradeNo)
	if x := &c.Expect; (x.Check || c.HoldIfSettled || c.Presence != PresenceAny || c.PayloadIfNotHeld != nil) && !orderAbsent {
		o, err := scanOrder(t.stmt(s.st.getOrder).QueryRowContext(t.ctx, e.MchID, e.OutTradeNo))
		switch {
		case err == ErrNotFound:
			orderAbsent = true
		case err != nil:
			return false, nil, fmt.Errorf("reading order %s: %w", e.OutTradeNo, err)
		case x.Check && (o.AppID != x.AppID || (x.CheckTotalFee && o.TotalFee != x.TotalFee)):
			return false, nil, &MismatchError{Order: o}
		default:
			order = o
		}
	}
	switch {
	case c.Presence == PresenceHeld && orderAbsent:
		return false, nil, ErrOrderNotHeld
	case c.Presence == PresenceNotHeld && !orderAbsent:
		return false, nil, ErrOrderHeld
	}
	if r := c.Refund; r != nil && r.RefundFee > 0 {
		rf, err := scanRefund(t.stmt(s.st.getRefund).QueryRowContext(t.ctx, e.MchID, r.OutRefundNo))
		switch {
		case err == ErrNotFound:
		case err != nil:
			return false, nil, fmt.Errorf("reading refund %s: %w", r.OutRefundNo, err)
		case rf.RefundFee != r.RefundFee:
			return false, nil, &MismatchError{Refund: rf}
		}
	}
	return orderAbsent, order, nil
}

// insertEvent is RecordEvent inside a transaction: check the change's
// expectations, insert the event if its ID is new (ErrExists, its caller's
// answer, if not), and then only, apply the change. An order the ledger
// surely does not hold gets no update.
func (s *sqlStore) insertEvent(t *txn, e *Event, c Change, res *inserted) error {
	orderAbsent, order, err := s.checkExpectations(t, e, c)
	if err != nil {
		return err
	}
	payload := e.Payload
	if orderAbsent && c.PayloadIfNotHeld != nil {
		payload = c.PayloadIfNotHeld
	}
	*res = inserted{payload: payload}
	insert := s.st.insertEvent
	held := c.HoldIfSettled && order != nil && (order.State == OrderPaid || order.State == OrderMismatch)
	if held {
		insert = s.st.insertHeldEvent
	}
	if err := execOne(t.ctx, t.stmt(insert), ErrExists, e.ID, e.MchID, e.Type, e.OutTradeNo, e.TransactionID, payload, toNs(e.CreatedAt), toNs(e.NextAttemptAt)); err != nil {
		return err
	}
	if held {
		res.held = true
		return nil
	}
	if c.OrderState != "" && !orderAbsent {
		if _, err := t.stmt(s.st.setOrderState).ExecContext(t.ctx, c.OrderState, toNs(e.CreatedAt), e.MchID, e.OutTradeNo, c.OrderState); err != nil {
			return err
		}
	}
	if r := c.Refund; r != nil {
		if _, err := t.stmt(s.st.setRefundState).ExecContext(t.ctx, r.State, toNs(e.CreatedAt), r.RefundID, r.RefundID, e.MchID, r.OutRefundNo, r.State); err != nil {
			return err
		}
	}
	return nil
}

// inserted is what insertEvent stored, for RecordEvent to write back into
// the caller's event once the transaction committed (an op may run again
// after a failed batch: it changes nothing of its caller's before that).
type inserted struct {
	payload []byte
	held    bool
}

func (s *sqlStore) RecordEvent(ctx context.Context, e *Event, change Change) (bool, error) {
	if err := s.eventDefaults(e); err != nil {
		return false, fmt.Errorf("ledger: record event: %w", err)
	}
	if err := checkChange(change); err != nil {
		return false, fmt.Errorf("ledger: record event %s: %w", e.ID, err)
	}
	if err := s.checkOpen(); err != nil {
		return false, fmt.Errorf("ledger: record event %s: %w", e.ID, err)
	}
	var res inserted
	err := s.e.write(ctx, func(t *txn) error {
		err := s.insertEvent(t, e, change, &res)
		if !ownAnswer(err) {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
		return err
	}, true)
	switch err {
	case nil:
		e.Payload = res.payload
		if res.held {
			e.State = EventHeld
		}
		return true, nil
	case ErrExists: // a duplicate: nothing changed
		return false, nil
	}
	return false, fmt.Errorf("ledger: record event %s: %w", e.ID, err)
}

func (s *sqlStore) GetEvent(ctx context.Context, id string) (*Event, []Attempt, error) {
	if err := s.checkOpen(); err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s: %w", id, err)
	}
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	// One read transaction: the event and its attempts from one snapshot.
	tx, err := s.e.reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	t := newTxn(ctx, nil)
	t.onReader = true
	t.enter(tx)
	defer t.leave()
	e, err := scanEvent(t.stmt(s.st.getEvent).QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s: %w", id, err)
	}
	rows, err := t.stmt(s.st.getAttempts).QueryContext(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s attempts: %w", id, err)
	}
	defer rows.Close()
	var atts []Attempt
	for rows.Next() {
		var a Attempt
		var at, dur int64
		if err := rows.Scan(&a.EventID, &at, &dur, &a.Status, &a.Error, &a.Response); err != nil {
			return nil, nil, fmt.Errorf("ledger: get event %s attempts: %w", id, err)
		}
		a.At, a.Duration = fromNs(at), time.Duration(dur)
		atts = append(atts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s attempts: %w", id, err)
	}
	return e, atts, nil
}

func (s *sqlStore) ListEvents(ctx context.Context, f ListFilter) ([]*Event, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: list events: %w", err)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if limit > MaxListLimit {
		limit = MaxListLimit
	}
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	var where []string
	var args []any
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, f.State)
	}
	if f.MchID != "" {
		where = append(where, "mch_id = ?")
		args = append(args, f.MchID)
	}
	if f.Before != "" {
		var created int64
		err := s.st.eventCreated.reader.QueryRowContext(ctx, f.Before).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			err = ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("ledger: list events before %s: %w", f.Before, err)
		}
		where = append(where, "(created_at < ? OR (created_at = ? AND id < ?))")
		args = append(args, created, created, f.Before)
	}
	q := `SELECT ` + eventReadCols + ` FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.e.reader().QueryContext(ctx, s.d.rebind(q), args...)
	if err == nil {
		var out []*Event
		if out, err = scanEvents(rows, 0); err == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("ledger: list events: %w", err)
}

func (s *sqlStore) CountEvents(ctx context.Context) (map[string]int, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: count events: %w", err)
	}
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	rows, err := s.e.reader().QueryContext(ctx, qCountEvents)
	if err != nil {
		return nil, fmt.Errorf("ledger: count events: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{EventPending: 0, EventDelivered: 0, EventDead: 0, EventHeld: 0}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("ledger: count events: %w", err)
		}
		counts[state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: count events: %w", err)
	}
	return counts, nil
}

// ---- outbox ----

func (s *sqlStore) DueEvents(ctx context.Context, now time.Time, limit int, exclude []string, lease time.Duration) ([]*Event, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: due events: %w", err)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	shared := s.e.shared()
	if lease <= 0 {
		lease = DefaultClaimLease
	}
	ex := dedupe(exclude)
	// The smallest prepared shape that holds the list, padded with ""
	// (no event has an empty ID).
	n := len(ex)
	var st *stmt
	for i, size := range dueShapes {
		if size >= n {
			st, n = s.st.due[i], size
			break
		}
	}
	args := make([]any, 0, 4+n)
	for i := range n {
		if i < len(ex) {
			args = append(args, ex[i])
		} else {
			args = append(args, "")
		}
	}
	if shared {
		args = append(args, toNs(now.Add(lease)), toNs(now), toNs(now), limit)
	} else {
		args = append(args, toNs(now))
	}
	var q string
	if st == nil {
		if shared {
			q = s.d.rebind(claimQuery(s.d, n))
		} else {
			q = s.d.rebind(dueQuery(s.d, n))
		}
	}
	var out []*Event
	run := func(t *txn) error {
		var rows *sql.Rows
		var err error
		if st != nil {
			rows, err = t.stmt(st).QueryContext(t.ctx, args...)
		} else {
			rows, err = t.query(q, args...)
		}
		if err != nil {
			return err
		}
		out, err = scanEvents(rows, limit)
		return err
	}
	var err error
	if shared {
		// A claim writes: committed without waiting for the disk (a
		// claim lost in a crash of the database only lets another worker
		// deliver the event again, as at-least-once allows).
		err = s.e.write(ctx, run, false)
		if err == nil {
			until := fromNs(toNs(now.Add(lease)))
			for _, e := range out {
				e.ClaimedUntil = until
			}
			slices.SortFunc(out, func(a, b *Event) int {
				return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
			})
		}
	} else {
		err = s.e.read(ctx, run)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: due events: %w", err)
	}
	return out, nil
}

func dedupe(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func (s *sqlStore) NextDue(ctx context.Context) (time.Time, bool, error) {
	if err := s.checkOpen(); err != nil {
		return time.Time{}, false, fmt.Errorf("ledger: next due: %w", err)
	}
	var next int64
	ctx, cancel := s.e.bound(ctx)
	defer cancel()
	err := s.st.nextDue.reader.QueryRowContext(ctx).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("ledger: next due: %w", err)
	}
	return time.Unix(0, next).UTC(), true, nil
}

// attemptRow is what RecordAttempt writes: the attempt, clipped, and the
// event's new state.
type attemptRow struct {
	a               Attempt
	state           string
	next, delivered int64
}

// attemptRow validates a and o and works out what they make of the event.
func (s *sqlStore) attemptRow(a Attempt, o Outcome) (attemptRow, error) {
	if a.EventID == "" {
		return attemptRow{}, errors.New("event id is required")
	}
	if o.Delivered && o.Dead {
		return attemptRow{}, errors.New("outcome both delivered and dead")
	}
	if a.At.IsZero() {
		a.At = s.now().UTC()
	}
	a.Error, a.Response = clip(a.Error), clip(a.Response)
	end := a.At.Add(a.Duration)
	r := attemptRow{a: a, state: EventPending, next: toNs(o.RetryAt)}
	switch {
	case o.Delivered:
		r.state, r.delivered = EventDelivered, toNs(end)
	case o.Dead:
		r.state = EventDead
	case o.RetryAt.IsZero():
		r.next = toNs(end)
	}
	return r, nil
}

// writeAttempt is RecordAttempt inside a transaction: ErrNotFound if the
// event is absent.
func (s *sqlStore) writeAttempt(t *txn, r *attemptRow) error {
	a := &r.a
	// The event first (its row lock, its count, and the outcome when it
	// is still this attempt's to give: see qAttemptEvent), then the
	// attempt, numbered by the count.
	claim, start := toNs(a.ClaimedUntil), toNs(a.At)
	var n int64
	err := t.stmt(s.st.attemptEvent).QueryRowContext(t.ctx,
		a.Status, a.Error, a.Response, r.state, r.state, r.next, r.delivered, a.EventID, claim, min(start, toNs(a.ReplayedAt))).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		err = t.stmt(s.st.attemptCount).QueryRowContext(t.ctx, claim, a.EventID).Scan(&n)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	_, err = t.stmt(s.st.insertAttempt).ExecContext(t.ctx, a.EventID, n, start, int64(a.Duration), a.Status, a.Error, a.Response)
	return err
}

// RecordAttempt is a write that need not be on disk when it returns,
// unlike an event: a crash (of the machine; a crash of the process loses
// nothing committed) may lose the last attempt records, and then only
// those. The event is then still pending, with its previous attempt count
// and schedule, and the worker delivers it again, with the same ID and
// payload: delivery is at least once in any case (the backend deduplicates
// on the event ID), so a lost record costs one more delivery, never a lost
// event. On SQLite the WAL is written in commit order and any later
// durable commit fsyncs it up to its own end, so what survives a crash is
// a prefix of the commits: an attempt record never survives without what
// was committed before it.
func (s *sqlStore) RecordAttempt(ctx context.Context, a Attempt, o Outcome) error {
	err := s.checkOpen()
	var r attemptRow
	if err == nil {
		r, err = s.attemptRow(a, o)
	}
	if err == nil {
		err = s.e.write(ctx, func(t *txn) error { return s.writeAttempt(t, &r) }, false)
	}
	if err != nil {
		return fmt.Errorf("ledger: record attempt of %s: %w", a.EventID, err)
	}
	return nil
}

func (s *sqlStore) ReleaseClaims(ctx context.Context, events []*Event) error {
	var claimed []*Event
	for _, e := range events {
		if !e.ClaimedUntil.IsZero() {
			claimed = append(claimed, e)
		}
	}
	if len(claimed) == 0 {
		return nil
	}
	err := s.checkOpen()
	if err == nil {
		q := s.d.rebind(qReleaseClaim)
		err = s.e.write(ctx, func(t *txn) error {
			for _, e := range claimed {
				if _, err := t.tx.ExecContext(t.ctx, q, e.ID, toNs(e.ClaimedUntil)); err != nil {
					return err
				}
			}
			return nil
		}, false)
	}
	if err != nil {
		return fmt.Errorf("ledger: release %d claims: %w", len(claimed), err)
	}
	return nil
}

func (s *sqlStore) Replay(ctx context.Context, id string, now time.Time) error {
	err := s.checkOpen()
	if err == nil {
		err = s.e.write(ctx, func(t *txn) error {
			return execOne(t.ctx, t.stmt(s.st.replay), ErrNotFound, toNs(now), toNs(now), id)
		}, true)
	}
	if err != nil {
		return fmt.Errorf("ledger: replay event %s: %w", id, err)
	}
	return nil
}

// ---- leases ----

func (s *sqlStore) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	err := s.checkOpen()
	if err == nil && (name == "" || holder == "" || ttl <= 0) {
		err = errors.New("name, holder and a positive ttl are required")
	}
	if err != nil {
		return false, fmt.Errorf("ledger: lease %s for %s: %w", name, holder, err)
	}
	res, err := s.e.exec(ctx, s.d.rebind(qTryLease(s.d)), name, holder, toNs(now.Add(ttl)), toNs(now))
	if err != nil {
		return false, fmt.Errorf("ledger: lease %s for %s: %w", name, holder, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("ledger: lease %s for %s: %w", name, holder, err)
	}
	return n > 0, nil
}

// ---- closing ----

func (s *sqlStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if err := s.e.close(); err != nil {
			s.closeErr = fmt.Errorf("ledger: close: %w", err)
		}
	})
	return s.closeErr
}
