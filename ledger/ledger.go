// Package ledger is the gateway's durable state: the orders it placed with
// WeChat Pay, the refunds it asked for, the events it derived from WeChat's
// notifications, and the outbox through which those events are delivered
// to the backend (with the history of every delivery attempt).
//
// It is two layers. The neutral one (store.go, queries.go, checks.go,
// migrate.go, dialect.go) is the ledger's queries, scans, rules and
// schema, written once in SQL that SQLite and PostgreSQL both understand,
// with a dialect for the few differences (placeholders, column types,
// upserts). Under it an engine (engine.go) runs them on one database: its
// connections, its transactions and their durability, and how concurrent
// writes share them. The SQLite engine (sqlite.go, sqlite_committer.go,
// sqlite_orderkeys.go; modernc.org/sqlite, no cgo) is the embedded
// default: one writer goroutine that group-commits, fsyncs only what must
// be durable, and keeps an in-memory filter of the order keys. A database
// is added as an engine, opened by Open for its driver name; the layer
// above does not change.
//
// Durability: RecordEvent and Replay are on stable storage when they
// return nil: the gateway may then answer WeChat SUCCESS. Orders and
// delivery attempts may be committed without waiting for the disk:
// WeChat's notification, not the order row, proves a payment, and a lost
// attempt record only means one more delivery of the same event (see
// RecordAttempt).
//
// Its users declare the small interfaces they need of Store (the gateway's
// service and reconciler, the delivery worker, the admin API).
//
// Times are stored as integer Unix nanoseconds (0 for the zero time) and
// returned in UTC.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrNotFound: no such order, event or pagination anchor.
	ErrNotFound = errors.New("ledger: not found")
	// ErrExists: the order exists already.
	ErrExists = errors.New("ledger: already exists")
	// ErrClosed: the store is closed (or closing).
	ErrClosed = errors.New("ledger: closed")
	// ErrOrderHeld and ErrOrderNotHeld: RecordEvent stored nothing because
	// the event's order is held, or not, against the change's Presence.
	ErrOrderHeld    = errors.New("ledger: the event's order is held")
	ErrOrderNotHeld = errors.New("ledger: the event's order is not held")
	// ErrSchemaTooNew: the database was written by a newer version of the
	// gateway, with a schema this build does not know.
	ErrSchemaTooNew = errors.New("ledger: database schema is newer than this build")
)

// Order states. A state only moves forward: NOTPAY and PAYERROR (a failed
// attempt; the order may still be paid) may become anything; CLOSED may
// still become SUCCESS or MISMATCH (paid at the last moment); SUCCESS and
// MISMATCH are final. A change that would move an order back is not made.
const (
	OrderNotPay   = "NOTPAY"
	OrderPaid     = "SUCCESS"
	OrderPayError = "PAYERROR"
	OrderClosed   = "CLOSED"
	OrderMismatch = "MISMATCH" // a notification disagreed with the order
)

// Order is an order the gateway placed with WeChat (unifiedorder).
type Order struct {
	MchID       string
	OutTradeNo  string
	AppID       string
	TradeType   string
	TotalFee    int64
	ContentHash string // hash of the order's content as the caller sent it; same content <=> same hash
	PrepayID    string
	CodeURL     string
	MWebURL     string
	State       string
	CreatedAt   time.Time
	ExpiresAt   time.Time // when the prepay_id stops being valid (CreatedAt + 2h, or earlier time_expire)
	UpdatedAt   time.Time
	NextCheckAt time.Time // when reconciliation next asks WeChat about it while unpaid; zero: never
	Checks      int       // how many times reconciliation asked
}

// Event states.
const (
	EventPending   = "pending" // waiting for (another) delivery attempt
	EventDelivered = "delivered"
	EventDead      = "dead" // gave up after the retry max age; kept, replayable
	// EventHeld: recorded and never delivered (a payment failure notified
	// after its order was paid); replayable by an operator.
	EventHeld = "held"
)

// Event is one event of the outbox, delivered to the backend.
type Event struct {
	ID            string // "evt_…", unique
	MchID         string
	Type          string // payment.succeeded, payment.failed, payment.mismatch, …
	OutTradeNo    string
	TransactionID string
	Payload       []byte // the exact JSON body delivered to the backend
	CreatedAt     time.Time
	State         string
	Attempts      int
	NextAttemptAt time.Time
	DeliveredAt   time.Time // zero unless delivered
	LastStatus    int       // HTTP status of the last attempt, 0 if none/failed before a status
	LastError     string
	LastResponse  string // first 1 KiB of the backend's last answer
	// ReplayedAt is when the event was last replayed (zero if never):
	// its retry window (the delivery policy's max age) starts then, not
	// at CreatedAt. ReplayAttempts is Attempts at that time: the backoff
	// counts the attempts after it.
	ReplayedAt     time.Time
	ReplayAttempts int
	// ClaimedUntil is when the claim DueEvents took on the event ends (a
	// database several gateways share); zero where nothing is claimed.
	ClaimedUntil time.Time
}

// Attempt is one delivery attempt of an event.
type Attempt struct {
	EventID  string
	At       time.Time
	Duration time.Duration
	Status   int
	Error    string
	Response string // first 1 KiB
	// ClaimedUntil is the end of the claim the attempt was made under
	// (its event's ClaimedUntil): recording the attempt ends that claim
	// only, never another gateway's that took the event over since.
	ClaimedUntil time.Time
	// ReplayedAt is the event's ReplayedAt as the attempt's caller read it:
	// a replay since (even one before the attempt started) leaves the
	// outcome to the replayed event.
	ReplayedAt time.Time
}

// Outcome of a delivery attempt.
type Outcome struct {
	Delivered bool
	Dead      bool      // give up: becomes EventDead
	RetryAt   time.Time // when not delivered and not dead: next attempt time
}

// ListFilter selects events for ListEvents.
type ListFilter struct {
	State  string // "" = any
	MchID  string // "" = any
	Limit  int    // default 100, max 1000
	Before string // pagination: events created before the event with this ID ("" = newest first from the top)
}

// DefaultClaimLease is how long DueEvents claims the events it returns on a
// shared database when its caller names no lease.
const DefaultClaimLease = time.Minute

// Limits of ListEvents and of the text kept of an attempt.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// MaxResponse bounds Attempt.Response, Attempt.Error and the event's
	// LastResponse / LastError (bytes, cut at a UTF-8 boundary).
	MaxResponse = 1024
)

// Change is what recording an event changes besides the outbox, in the
// event's own transaction and only when the event is new: a duplicate
// changes nothing.
type Change struct {
	// OrderState, when not empty, becomes the state of the event's order
	// (MchID, OutTradeNo), with UpdatedAt the event's CreatedAt, if the
	// ledger holds that order.
	OrderState string
	// Expect, when its Check is set, is what the event's order must hold
	// if the ledger holds it: when it holds other figures, nothing is
	// stored or changed and RecordEvent returns a *MismatchError with the
	// order, so that the caller can record what the disagreement calls
	// for instead. An order the ledger does not hold is no disagreement.
	Expect OrderFigures
	// Presence, when not PresenceAny, is what the event's payload says
	// of its order: that the ledger holds it (PresenceHeld) or not
	// (PresenceNotHeld). When that is not so, nothing is stored and
	// RecordEvent returns ErrOrderNotHeld or ErrOrderHeld (wrapped), so
	// that the caller can build the payload that says what is.
	Presence Presence
	// PayloadIfNotHeld, when set, is the event's payload for the case
	// that the ledger does not hold its order (the event's Payload is
	// then the one for an order it holds): the transaction stores the one
	// that is so, and RecordEvent writes it back into the event's
	// Payload. With it, a caller that cannot predict the order's presence
	// (several gateways on one database) records in one transaction what
	// Presence would have refused once. Presence must be PresenceAny.
	PayloadIfNotHeld []byte
	// HoldIfSettled stores the event held (EventHeld: recorded, never
	// delivered, the order left as it is) when the ledger holds the
	// event's order and it is settled (SUCCESS or MISMATCH): for a failure
	// notified after the payment. RecordEvent writes EventHeld back into
	// the event's State then.
	HoldIfSettled bool
	// Refund, when set, updates one of the merchant's refunds, if the
	// ledger holds it.
	Refund *RefundUpdate
}

// Presence is what a change requires of the ledger holding the event's
// order.
type Presence int

const (
	PresenceAny Presence = iota
	PresenceHeld
	PresenceNotHeld
)

// OrderFigures are the figures of an order a payment must agree with.
type OrderFigures struct {
	// Check turns the comparison on.
	Check bool
	AppID string
	// TotalFee is compared when CheckTotalFee is set (a failed payment
	// may report no amount).
	TotalFee      int64
	CheckTotalFee bool
}

// RefundUpdate sets a refund's state, and WeChat's refund_id when known.
type RefundUpdate struct {
	OutRefundNo string
	State       string
	RefundID    string // "" keeps the one recorded
	// RefundFee, when above zero, is the amount the refund must have if
	// the ledger holds it: otherwise nothing is stored or changed and
	// RecordEvent returns a *MismatchError with the refund.
	RefundFee int64
}

// MismatchError is RecordEvent's answer when the order or refund the
// ledger holds disagrees with what the change expected: nothing was
// stored. It carries the record that disagrees.
type MismatchError struct {
	Order  *Order
	Refund *Refund
}

func (e *MismatchError) Error() string {
	if e.Refund != nil {
		return fmt.Sprintf("ledger: refund %s/%s disagrees with the event", e.Refund.MchID, e.Refund.OutRefundNo)
	}
	return fmt.Sprintf("ledger: order %s/%s disagrees with the event", e.Order.MchID, e.Order.OutTradeNo)
}

// Store is the gateway's durable state.
type Store interface {
	// PutOrder inserts an order; ErrExists (wrapped) when (MchID, OutTradeNo)
	// exists. Zero fields get defaults: State NOTPAY, CreatedAt now,
	// ExpiresAt CreatedAt+2h, UpdatedAt CreatedAt (written back into o).
	PutOrder(ctx context.Context, o *Order) error
	// RecordPrepay records WeChat's answer to an order's placement: o's
	// PrepayID, CodeURL, MWebURL, ExpiresAt, UpdatedAt and NextCheckAt go
	// onto the order recorded with o's ContentHash (by PutOrder before the
	// call to WeChat); its state, creation time and checks stay (a payment
	// recorded meanwhile stays recorded), and NextCheckAt is taken only
	// while the order is open. An order no longer recorded is inserted
	// whole. ErrExists (wrapped) when the order is recorded with other
	// content. Orders are committed without waiting for the disk.
	RecordPrepay(ctx context.Context, o *Order) error
	// ForgetOrder removes an order recorded before a placement that WeChat
	// refused (so that WeChat does not know it): only while it has content
	// contentHash, no prepay_id and state NOTPAY. Nothing else is removed,
	// and removing nothing is no error.
	ForgetOrder(ctx context.Context, mchID, outTradeNo, contentHash string) error
	// MayHoldOrder reports whether the ledger may hold an order, without
	// waiting for the database: false when it surely does not (an
	// engine's filter of the order keys said so), true otherwise. For
	// predictions only: RecordEvent's Presence is what makes them safe.
	MayHoldOrder(mchID, outTradeNo string) bool
	// PredictsOrders reports whether MayHoldOrder answers from a filter
	// of the order keys (SQLite), so that its true is a fair prediction;
	// false: it answers true for every order (a database that other
	// gateways write to), and a caller should not rely on it (see
	// Change.PayloadIfNotHeld).
	PredictsOrders() bool
	GetOrder(ctx context.Context, mchID, outTradeNo string) (*Order, error)
	// SetOrderState sets an order's state if that moves it forward (see
	// the order states; a change backwards is not made, and is no error);
	// ErrNotFound if absent.
	SetOrderState(ctx context.Context, mchID, outTradeNo, state string, now time.Time) error

	// RecordEvent stores an event (State pending, NextAttemptAt =
	// e.NextAttemptAt or e.CreatedAt) durably — fsynced when it returns nil
	// — in one transaction with change (see Change), which applies only
	// when the event is new; when the change's expectations are not met it
	// stores nothing and returns a *MismatchError (wrapped). It returns created=false and no error when an
	// event with the same ID exists already: nothing is changed then.
	// Concurrent calls are group-committed; if their transaction fails, all
	// of them get the error and none is stored. It writes back into e what
	// it stores: CreatedAt (now if zero), NextAttemptAt, State pending,
	// empty delivery fields. If ctx ends while the call waits for its
	// batch, it returns ctx's error although the batch may still commit (a
	// retried notification then gets created=false).
	RecordEvent(ctx context.Context, e *Event, change Change) (created bool, err error)
	// GetEvent returns an event and its attempts, oldest first.
	GetEvent(ctx context.Context, id string) (*Event, []Attempt, error)
	// ListEvents returns events newest first.
	ListEvents(ctx context.Context, f ListFilter) ([]*Event, error)
	// CountEvents returns the number of events per state (the four known
	// states are always present).
	CountEvents(ctx context.Context) (map[string]int, error)

	// DueEvents returns up to limit pending events with NextAttemptAt <= now,
	// earliest NextAttemptAt first (then oldest CreatedAt), so that events
	// being retried cannot starve the others, keeping per-order order: an event is due only if
	// no older (by CreatedAt, then ID) event of the same (MchID, OutTradeNo)
	// is still pending. Events whose ID is in exclude (in flight) are
	// skipped, and so are the other events of their orders.
	//
	// On a database several gateways share (PostgreSQL), the events
	// returned are claimed until now+lease (DefaultClaimLease when lease
	// is 0): no other DueEvents returns them before then, unless their
	// attempt is recorded (RecordAttempt ends the claim). The caller's
	// lease must cover the wait before their attempts and the attempts
	// themselves; a claim that expires (its worker died) lets another
	// worker take the event. On SQLite (one process) lease is unused.
	DueEvents(ctx context.Context, now time.Time, limit int, exclude []string, lease time.Duration) ([]*Event, error)
	// NextDue returns the earliest NextAttemptAt among the pending events
	// that are first of their order (a later event of an order waits for
	// the first, not for the clock); ok=false if none. Events in flight
	// count: the worker knows about those.
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
	// RecordAttempt appends an attempt and applies its outcome to the event
	// in one transaction; ErrNotFound if the event is absent. It is not
	// fsynced when it returns (at-least-once delivery makes that safe). The
	// event gets
	// Attempts+1 and Last* from a; then delivered: State delivered,
	// DeliveredAt = a.At+a.Duration; dead: State dead; otherwise State
	// pending, NextAttemptAt = o.RetryAt (a.At+a.Duration if zero).
	// Error and Response are kept to MaxResponse bytes of valid UTF-8.
	RecordAttempt(ctx context.Context, a Attempt, o Outcome) error
	// ReleaseClaims ends the claims DueEvents took on events that will
	// not be attempted after all (a worker stopping with events queued),
	// so that another gateway takes them at once rather than when the
	// claims expire. A claim taken over since is left alone; events
	// without a claim are skipped.
	ReleaseClaims(ctx context.Context, events []*Event) error
	// Replay makes any event pending again with NextAttemptAt = now, its
	// retry window and backoff starting again as if it had just been
	// recorded (ReplayedAt = now, ReplayAttempts = Attempts); its ID,
	// payload and attempt history are unchanged. ErrNotFound if absent.
	Replay(ctx context.Context, id string, now time.Time) error

	// OrdersToCheck returns up to limit unpaid (NOTPAY or PAYERROR) orders
	// whose NextCheckAt is due at now, earliest first.
	OrdersToCheck(ctx context.Context, now time.Time, limit int) ([]*Order, error)
	// ScheduleCheck sets an order's NextCheckAt (zero: never again) and
	// Checks.
	ScheduleCheck(ctx context.Context, mchID, outTradeNo string, next time.Time, checks int) error

	// PutRefund records a refund; ErrExists when its out_refund_no is
	// recorded already.
	PutRefund(ctx context.Context, r *Refund) error
	GetRefund(ctx context.Context, mchID, outRefundNo string) (*Refund, error)
	// SetRefundState updates a refund's state, and its refund_id when
	// given, if that moves it forward (UNKNOWN, PROCESSING, CHANGE, then
	// SUCCESS or REFUNDCLOSE, which are final); a change backwards is not
	// made and is no error. ErrNotFound when absent.
	SetRefundState(ctx context.Context, mchID, outRefundNo, state, refundID string, now time.Time) error
	// ForgetRefund removes a refund recorded before WeChat was asked for
	// it, when WeChat refused it: only while its state is UNKNOWN and it
	// has no refund_id.
	ForgetRefund(ctx context.Context, mchID, outRefundNo string) error
	// RefundsToSettle returns up to limit refunds whose outcome is
	// unknown (UNKNOWN), asked for at or before before, and refunds under
	// way (PROCESSING) last updated at or before processingBefore, least
	// recently updated first.
	RefundsToSettle(ctx context.Context, before, processingBefore time.Time, limit int) ([]*Refund, error)

	// TryLease takes or renews a named lease for holder until now+ttl; it
	// succeeds if the lease is free, expired, or already held by holder.
	TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)

	// Close stops the group committer (RecordEvent calls not yet taken get
	// ErrClosed) and closes the database. Calling it again is a no-op.
	Close() error
}
