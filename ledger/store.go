package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// sqlStore implements Store on database/sql. It knows nothing of the
// database beyond its dialect.
type sqlStore struct {
	d dialect
	// durable takes the event writes (RecordEvent, RecordAttempt, Replay):
	// every commit is on disk when it returns.
	durable *sql.DB
	// fast takes the order and lease writes and every read.
	fast *sql.DB
	now  func() time.Time

	group    bool // group commit of RecordEvent
	maxBatch int
	reqs     chan *recordReq // unbuffered: a send succeeds only when the committer takes it
	closing  chan struct{}   // closed by Close
	done     chan struct{}   // closed when the committer has returned

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool

	// eventTxs counts the transactions RecordEvent committed (tests,
	// benchmark).
	eventTxs atomic.Int64
	// beforeBatch, if set, is called by the committer with the size of each
	// batch before its transaction (tests).
	beforeBatch func(n int)
}

// withTx runs fn in a transaction of db, committing if it returns nil.
func withTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
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

// ---- orders ----

const orderCols = `mch_id, out_trade_no, app_id, trade_type, total_fee, content_hash, prepay_id, code_url, mweb_url, state, created_at, expires_at, updated_at, next_check_at, checks`

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

func (s *sqlStore) PutOrder(ctx context.Context, o *Order) error {
	if err := s.orderDefaults(o); err != nil {
		return fmt.Errorf("ledger: put order: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("ledger: put order %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	res, err := s.fast.ExecContext(ctx, s.d.rebind(`INSERT INTO orders (`+orderCols+`) VALUES (`+placeholders(15)+`)`+s.d.insertIgnore("mch_id, out_trade_no")),
		orderArgs(o)...)
	if err == nil {
		err = oneRow(res, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("ledger: put order %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	return nil
}

func (s *sqlStore) ReplaceOrder(ctx context.Context, o *Order) error {
	if o != nil && o.UpdatedAt.IsZero() {
		o.UpdatedAt = s.now().UTC()
	}
	if err := s.orderDefaults(o); err != nil {
		return fmt.Errorf("ledger: replace order: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("ledger: replace order %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	res, err := s.fast.ExecContext(ctx, s.d.rebind(`UPDATE orders SET app_id = ?, trade_type = ?, total_fee = ?, content_hash = ?,
		prepay_id = ?, code_url = ?, mweb_url = ?, state = ?, created_at = ?, expires_at = ?, updated_at = ?,
		next_check_at = ?, checks = ?
		WHERE mch_id = ? AND out_trade_no = ?`),
		o.AppID, o.TradeType, o.TotalFee, o.ContentHash, o.PrepayID, o.CodeURL, o.MWebURL, o.State,
		toNs(o.CreatedAt), toNs(o.ExpiresAt), toNs(o.UpdatedAt), toNs(o.NextCheckAt), o.Checks, o.MchID, o.OutTradeNo)
	if err == nil {
		err = oneRow(res, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("ledger: replace order %s/%s: %w", o.MchID, o.OutTradeNo, err)
	}
	return nil
}

func (s *sqlStore) GetOrder(ctx context.Context, mchID, outTradeNo string) (*Order, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: get order %s/%s: %w", mchID, outTradeNo, err)
	}
	var o Order
	var created, expires, updated, next int64
	err := s.fast.QueryRowContext(ctx, s.d.rebind(`SELECT `+orderCols+` FROM orders WHERE mch_id = ? AND out_trade_no = ?`), mchID, outTradeNo).
		Scan(&o.MchID, &o.OutTradeNo, &o.AppID, &o.TradeType, &o.TotalFee, &o.ContentHash, &o.PrepayID, &o.CodeURL, &o.MWebURL,
			&o.State, &created, &expires, &updated, &next, &o.Checks)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: get order %s/%s: %w", mchID, outTradeNo, err)
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
		var res sql.Result
		res, err = s.fast.ExecContext(ctx, s.d.rebind(`UPDATE orders SET state = ?, updated_at = ? WHERE mch_id = ? AND out_trade_no = ?`),
			state, toNs(now), mchID, outTradeNo)
		if err == nil {
			err = oneRow(res, ErrNotFound)
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: set order %s/%s state %s: %w", mchID, outTradeNo, state, err)
	}
	return nil
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

// ---- events ----

const eventCols = `id, mch_id, type, out_trade_no, transaction_id, payload, created_at, state, attempts, next_attempt_at, delivered_at, last_status, last_error, last_response`

// eventColsE is eventCols qualified with the table alias e.
const eventColsE = `e.id, e.mch_id, e.type, e.out_trade_no, e.transaction_id, e.payload, e.created_at, e.state, e.attempts, e.next_attempt_at, e.delivered_at, e.last_status, e.last_error, e.last_response`

type rowScanner interface{ Scan(dest ...any) error }

func scanEvent(r rowScanner) (*Event, error) {
	var e Event
	var created, next, delivered int64
	if err := r.Scan(&e.ID, &e.MchID, &e.Type, &e.OutTradeNo, &e.TransactionID, &e.Payload, &created, &e.State, &e.Attempts,
		&next, &delivered, &e.LastStatus, &e.LastError, &e.LastResponse); err != nil {
		return nil, err
	}
	if e.Payload == nil {
		e.Payload = []byte{}
	}
	e.CreatedAt, e.NextAttemptAt, e.DeliveredAt = fromNs(created), fromNs(next), fromNs(delivered)
	return &e, nil
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

// insertEvent is RecordEvent inside tx: insert the event if its ID is new,
// and then only, set the order's state.
func (s *sqlStore) insertEvent(ctx context.Context, tx *sql.Tx, e *Event, orderState string) (bool, error) {
	res, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO events (`+eventCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, '`+EventPending+`', 0, ?, 0, 0, '', '')`+s.d.insertIgnore("id")),
		e.ID, e.MchID, e.Type, e.OutTradeNo, e.TransactionID, e.Payload, toNs(e.CreatedAt), toNs(e.NextAttemptAt))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil || n == 0 {
		return false, err
	}
	if orderState != "" {
		if _, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE orders SET state = ?, updated_at = ? WHERE mch_id = ? AND out_trade_no = ?`),
			orderState, toNs(e.CreatedAt), e.MchID, e.OutTradeNo); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (s *sqlStore) RecordEvent(ctx context.Context, e *Event, orderState string) (bool, error) {
	if err := s.eventDefaults(e); err != nil {
		return false, fmt.Errorf("ledger: record event: %w", err)
	}
	if err := s.checkOpen(); err != nil {
		return false, fmt.Errorf("ledger: record event %s: %w", e.ID, err)
	}
	if !s.group {
		var created bool
		err := withTx(ctx, s.durable, func(tx *sql.Tx) error {
			var err error
			created, err = s.insertEvent(ctx, tx, e, orderState)
			return err
		})
		if err != nil {
			return false, fmt.Errorf("ledger: record event %s: %w", e.ID, err)
		}
		s.eventTxs.Add(1)
		return created, nil
	}
	return s.submit(ctx, e, orderState)
}

func (s *sqlStore) GetEvent(ctx context.Context, id string) (*Event, []Attempt, error) {
	if err := s.checkOpen(); err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s: %w", id, err)
	}
	// One read transaction: the event and its attempts from one snapshot.
	tx, err := s.fast.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s: %w", id, err)
	}
	defer func() { _ = tx.Rollback() }()
	e, err := scanEvent(tx.QueryRowContext(ctx, s.d.rebind(`SELECT `+eventCols+` FROM events WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ledger: get event %s: %w", id, err)
	}
	rows, err := tx.QueryContext(ctx, s.d.rebind(`SELECT event_id, attempted_at, duration_ns, status, error, response
		FROM attempts WHERE event_id = ? ORDER BY n`), id)
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

func (s *sqlStore) queryEvents(ctx context.Context, what, query string, args ...any) ([]*Event, error) {
	rows, err := s.fast.QueryContext(ctx, s.d.rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: %s: %w", what, err)
	}
	defer rows.Close()
	var out []*Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger: %s: %w", what, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: %s: %w", what, err)
	}
	return out, nil
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
		err := s.fast.QueryRowContext(ctx, s.d.rebind(`SELECT created_at FROM events WHERE id = ?`), f.Before).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			err = ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("ledger: list events before %s: %w", f.Before, err)
		}
		where = append(where, "(created_at < ? OR (created_at = ? AND id < ?))")
		args = append(args, created, created, f.Before)
	}
	q := `SELECT ` + eventCols + ` FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	return s.queryEvents(ctx, "list events", q, args...)
}

func (s *sqlStore) CountEvents(ctx context.Context) (map[string]int, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: count events: %w", err)
	}
	rows, err := s.fast.QueryContext(ctx, `SELECT state, COUNT(*) FROM events GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("ledger: count events: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{EventPending: 0, EventDelivered: 0, EventDead: 0}
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

// firstOfOrder holds for a pending event e when no older (by created_at,
// then id) event of its order is pending.
const firstOfOrder = `NOT EXISTS (SELECT 1 FROM events o
	WHERE o.mch_id = e.mch_id AND o.out_trade_no = e.out_trade_no AND o.state = '` + EventPending + `'
	AND (o.created_at < e.created_at OR (o.created_at = e.created_at AND o.id < e.id)))`

func (s *sqlStore) DueEvents(ctx context.Context, now time.Time, limit int, exclude []string) ([]*Event, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("ledger: due events: %w", err)
	}
	if limit <= 0 {
		limit = DefaultListLimit
	}
	ex := dedupe(exclude)
	var b strings.Builder
	b.WriteString(`SELECT ` + eventColsE + ` FROM events e
		WHERE e.state = '` + EventPending + `' AND e.next_attempt_at <= ? AND ` + firstOfOrder)
	args := make([]any, 0, 2+2*len(ex))
	args = append(args, toNs(now))
	if len(ex) > 0 {
		ph := placeholders(len(ex))
		b.WriteString(` AND e.id NOT IN (` + ph + `)
		AND NOT EXISTS (SELECT 1 FROM events x
			WHERE x.id IN (` + ph + `) AND x.mch_id = e.mch_id AND x.out_trade_no = e.out_trade_no)`)
		for _, id := range ex {
			args = append(args, id)
		}
		for _, id := range ex {
			args = append(args, id)
		}
	}
	// Earliest due first: a retried event waits behind events due before
	// it, so a few failing events cannot starve the rest.
	b.WriteString(` ORDER BY e.next_attempt_at, e.created_at, e.id LIMIT ?`)
	args = append(args, limit)
	return s.queryEvents(ctx, "due events", b.String(), args...)
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
	var next sql.NullInt64
	err := s.fast.QueryRowContext(ctx, `SELECT MIN(e.next_attempt_at) FROM events e
		WHERE e.state = '`+EventPending+`' AND `+firstOfOrder).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("ledger: next due: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(0, next.Int64).UTC(), true, nil
}

func (s *sqlStore) RecordAttempt(ctx context.Context, a Attempt, o Outcome) error {
	err := s.checkOpen()
	if err == nil && a.EventID == "" {
		err = errors.New("event id is required")
	}
	if err == nil && o.Delivered && o.Dead {
		err = errors.New("outcome both delivered and dead")
	}
	if err != nil {
		return fmt.Errorf("ledger: record attempt of %s: %w", a.EventID, err)
	}
	if a.At.IsZero() {
		a.At = s.now().UTC()
	}
	a.Error, a.Response = clip(a.Error), clip(a.Response)
	end := a.At.Add(a.Duration)
	state, next, delivered := EventPending, o.RetryAt, time.Time{}
	switch {
	case o.Delivered:
		state, delivered = EventDelivered, end
	case o.Dead:
		state = EventDead
	case next.IsZero():
		next = end
	}
	err = withTx(ctx, s.durable, func(tx *sql.Tx) error {
		var n int
		var prevNext int64
		err := tx.QueryRowContext(ctx, s.d.rebind(`SELECT attempts, next_attempt_at FROM events WHERE id = ?`), a.EventID).Scan(&n, &prevNext)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		n++
		if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO attempts (event_id, n, attempted_at, duration_ns, status, error, response)
			VALUES (?, ?, ?, ?, ?, ?, ?)`),
			a.EventID, n, toNs(a.At), int64(a.Duration), a.Status, a.Error, a.Response); err != nil {
			return err
		}
		nextNs := prevNext // delivered or dead: keep the last schedule
		if state == EventPending {
			nextNs = toNs(next)
		}
		_, err = tx.ExecContext(ctx, s.d.rebind(`UPDATE events SET attempts = ?, last_status = ?, last_error = ?, last_response = ?,
			state = ?, next_attempt_at = ?, delivered_at = ? WHERE id = ?`),
			n, a.Status, a.Error, a.Response, state, nextNs, toNs(delivered), a.EventID)
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger: record attempt of %s: %w", a.EventID, err)
	}
	return nil
}

func (s *sqlStore) Replay(ctx context.Context, id string, now time.Time) error {
	err := s.checkOpen()
	if err == nil {
		var res sql.Result
		res, err = s.durable.ExecContext(ctx, s.d.rebind(`UPDATE events SET state = '`+EventPending+`', next_attempt_at = ?, delivered_at = 0 WHERE id = ?`),
			toNs(now), id)
		if err == nil {
			err = oneRow(res, ErrNotFound)
		}
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
	res, err := s.fast.ExecContext(ctx, s.d.rebind(`INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)`+
		s.d.upsert("name", "holder = excluded.holder, expires_at = excluded.expires_at",
			"leases.holder = excluded.holder OR leases.expires_at <= ?")),
		name, holder, toNs(now.Add(ttl)), toNs(now))
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
		close(s.closing)
		if s.group {
			<-s.done
		}
		err := s.durable.Close()
		if s.fast != s.durable {
			err = errors.Join(err, s.fast.Close())
		}
		s.closeErr = err
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("ledger: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}
