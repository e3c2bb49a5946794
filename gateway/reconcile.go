package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// ReconcileLedger is what the Reconciler needs of the ledger: the unpaid
// orders due for a check, their schedule and state, and a lease so that
// one gateway on a shared ledger runs the job at a time.
type ReconcileLedger interface {
	TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	OrdersToCheck(ctx context.Context, now time.Time, limit int) ([]*ledger.Order, error)
	ScheduleCheck(ctx context.Context, mchID, outTradeNo string, next time.Time, checks int) error
	SetOrderState(ctx context.Context, mchID, outTradeNo, state string, now time.Time) error
	RefundsToSettle(ctx context.Context, before, processingBefore time.Time, limit int) ([]*ledger.Refund, error)
	ForgetRefund(ctx context.Context, mchID, outRefundNo string) error
}

// ReconcileSetup is a running configuration's setup of the job.
type ReconcileSetup struct {
	// Owner is who configured it: Release(Owner) clears it.
	Owner any
	// Service records the payments found (as their notifications would
	// have been); its ledger is the Reconciler's.
	Service *Service
	// Merchants by mch_id: an order of a merchant not listed is no
	// longer checked.
	Merchants map[string]*Merchant
	// Delay is the first check's delay after an order is placed; later
	// checks double it, until the order's expiry.
	Delay time.Duration
	// CloseExpired closes the orders still unpaid at their expiry.
	CloseExpired bool
	// Logger receives what the job finds and its failures; nil: none.
	Logger *zap.Logger
}

func (s *ReconcileSetup) logger() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

// Reconciler asks WeChat (order query) about the orders the ledger holds
// as unpaid once their notification is overdue: a payment it finds is
// recorded and forwarded like the notification that never came; an order
// past its expiry is closed when the setup says so. The configurations
// sharing one ledger (during a reload, two) share its Reconciler and hand
// it their setup as they start.
type Reconciler struct {
	ledger ReconcileLedger
	holder string
	now    func() time.Time
	setup  atomic.Pointer[ReconcileSetup]
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// NewReconciler returns a Reconciler of l; now is its clock (time.Now when
// nil).
func NewReconciler(l ReconcileLedger, now func() time.Time) *Reconciler {
	if now == nil {
		now = time.Now
	}
	return &Reconciler{ledger: l, holder: "wxpay-" + rand.Text(), now: now}
}

// Configure sets the current setup and starts the job on first use.
func (rc *Reconciler) Configure(s *ReconcileSetup) {
	if s == nil || s.Delay <= 0 {
		return
	}
	rc.setup.Store(s)
	rc.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		rc.cancel = cancel
		rc.done = make(chan struct{})
		go rc.loop(ctx)
	})
}

// Release clears the setup if it is still owner's (a reload may have put
// a newer one in place already).
func (rc *Reconciler) Release(owner any) {
	if s := rc.setup.Load(); s != nil && s.Owner == owner {
		rc.setup.CompareAndSwap(s, nil)
	}
}

// Stop ends the job, waiting for a round in progress.
func (rc *Reconciler) Stop() {
	if rc.cancel != nil {
		rc.cancel()
		<-rc.done
	}
}

func (rc *Reconciler) loop(ctx context.Context) {
	defer close(rc.done)
	for {
		wait := 5 * time.Second
		if s := rc.setup.Load(); s != nil {
			wait = min(max(s.Delay/5, 50*time.Millisecond), 30*time.Second)
			rc.Round(ctx, s, 3*wait+time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Round checks the orders due now, if this Reconciler holds the job's
// lease (taken or renewed for leaseTTL).
func (rc *Reconciler) Round(ctx context.Context, s *ReconcileSetup, leaseTTL time.Duration) {
	now := rc.now()
	ok, err := rc.ledger.TryLease(ctx, "reconcile", rc.holder, now, leaseTTL)
	if err != nil || !ok {
		if err != nil && ctx.Err() == nil {
			s.logger().Error("reconcile: taking the lease", zap.Error(err))
		}
		return
	}
	orders, err := rc.ledger.OrdersToCheck(ctx, now, 50)
	if err != nil {
		if ctx.Err() == nil {
			s.logger().Error("reconcile: reading orders", zap.Error(err))
		}
		return
	}
	// The lease is renewed before each check (one may take up to its
	// call's 30 s): a round never outlives it, and one whose lease another
	// gateway took stops, so that two never reconcile at once.
	hold := func() bool {
		ok, err := rc.ledger.TryLease(ctx, "reconcile", rc.holder, rc.now(), leaseTTL)
		if err != nil && ctx.Err() == nil {
			s.logger().Error("reconcile: renewing the lease", zap.Error(err))
		}
		return err == nil && ok
	}
	for _, o := range orders {
		if ctx.Err() != nil || !hold() {
			return
		}
		rc.check(ctx, s, o, rc.now())
	}
	refunds, err := rc.ledger.RefundsToSettle(ctx, now.Add(-s.Delay), now.Add(-max(s.Delay, RefundRecheck)), 20)
	if err != nil {
		if ctx.Err() == nil {
			s.logger().Error("reconcile: reading refunds", zap.Error(err))
		}
		return
	}
	for _, r := range refunds {
		if ctx.Err() != nil || !hold() {
			return
		}
		rc.settleRefund(ctx, s, r)
	}
}

// RefundRecheck is how often (at least) the reconciliation asks WeChat
// about a refund still under way (PROCESSING) whose notification has not
// come: WeChat notifies a refund once it ends, and a refund to a bank card
// can take days; one whose notifications were all lost (the notify
// endpoint down for longer than WeChat retries, or a notify_url elsewhere)
// is found this way.
const RefundRecheck = time.Hour

// userPayingRecheck is how soon an order WeChat says is being paid
// (USERPAYING: the payer is entering the password) is asked about again;
// WeChat advises 5 s, the reconciliation's rounds make it a little more.
const userPayingRecheck = 10 * time.Second

// userPayingGrace is how long after an order's expiry WeChat's USERPAYING
// is still asked about every userPayingRecheck; after that the order is
// checked (and closed) as any other.
const userPayingGrace = 10 * time.Minute

// settleRefund asks WeChat about a refund whose outcome the gateway does
// not know (no answer came, or it failed verification) once its
// notification is overdue, or about one still under way once RefundRecheck
// has passed since it was last seen so: a refund WeChat never made is
// forgotten; one it made is recorded as its notification would have been
// (in a final state, with its event, under the id the notification would
// have had, so that a late one is a duplicate), or as PROCESSING (which
// moves the next check of it RefundRecheck later).
func (rc *Reconciler) settleRefund(ctx context.Context, s *ReconcileSetup, r *ledger.Refund) {
	log := s.logger().With(zap.String("mch_id", r.MchID), zap.String("out_refund_no", r.OutRefundNo))
	// A refund left as it was (its merchant no longer configured, its
	// query failed, or WeChat does not find one it accepted) goes to the
	// back of the queue (a PROCESSING one: RefundRecheck later), so that
	// it does not hold up the others round after round.
	later := func() {
		if err := s.Service.ledger.SetRefundState(ctx, r.MchID, r.OutRefundNo, r.State, "", rc.now()); err != nil {
			log.Error("reconcile: rescheduling a refund", zap.Error(err))
		}
	}
	m, ok := s.Merchants[r.MchID]
	if !ok {
		later()
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := m.API.QueryRefund(cctx, m.AppIDs[0], r.OutRefundNo)
	var entry *RefundEntry
	if err == nil {
		entry = q.Entry(r.OutRefundNo)
	}
	switch {
	case r.State == ledger.RefundProcessing && ((err != nil && callErrorKind(err) == NotFound) || (err == nil && entry == nil)):
		// WeChat accepted it (it is PROCESSING), yet does not find it now:
		// nothing is forgotten; asked again RefundRecheck later.
		log.Error("reconcile: WeChat's refund query does not find a refund it accepted; asking again later", LogError(err))
		later()
	case (err != nil && callErrorKind(err) == NotFound) || (err == nil && entry == nil):
		if err := rc.ledger.ForgetRefund(ctx, r.MchID, r.OutRefundNo); err != nil {
			log.Error("reconcile: forgetting a refund WeChat never made", zap.Error(err))
			return
		}
		log.Info("reconcile: refund whose answer never came was not made by WeChat; forgotten")
		s.Service.obs.Reconciled(m.Name, "refund_forgotten")
	case err != nil:
		log.Warn("reconcile: refund query failed; will retry", LogError(err))
		later()
	case entry.RefundStatus == RefundStatusProcessing:
		if err := s.Service.ledger.SetRefundState(ctx, r.MchID, r.OutRefundNo, ledger.RefundProcessing, entry.RefundID, rc.now()); err != nil {
			log.Error("reconcile: recording a refund under way", zap.Error(err))
		}
	default:
		if err := s.Service.recordQueriedRefund(ctx, m, q, entry); err != nil {
			log.Error("reconcile: recording a refund found by a query", zap.Error(err))
			return
		}
		log.Warn("reconcile: refund found whose outcome was unknown; recorded and forwarded", zap.String("refund_status", entry.RefundStatus))
		s.Service.obs.Reconciled(m.Name, "refund_settled")
	}
}

// check asks WeChat about one order and decides what comes next.
func (rc *Reconciler) check(ctx context.Context, s *ReconcileSetup, o *ledger.Order, now time.Time) {
	log := s.logger().With(zap.String("mch_id", o.MchID), zap.String("out_trade_no", o.OutTradeNo))
	m, ok := s.Merchants[o.MchID]
	if !ok {
		// A merchant no longer configured: nothing to ask with.
		rc.schedule(ctx, log, o, time.Time{})
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := m.API.QueryOrder(cctx, o.AppID, o.OutTradeNo)
	switch {
	case err == nil && q.Paid() && q.Payment != nil:
		ev, created, err := s.Service.recordPayment(ctx, m, q.Payment)
		if err != nil {
			log.Error("reconcile: recording the payment found", zap.Error(err))
			rc.schedule(ctx, log, o, nextCheck(s.Delay, o, now))
			return
		}
		switch {
		case created && ev.Type == event.PaymentMismatch:
			log.Error("reconcile: payment found whose notification never came disagrees with the order; forwarded as payment.mismatch",
				zap.String("event_id", ev.ID), zap.String("transaction_id", q.TransactionID))
			s.Service.obs.Reconciled(m.Name, "mismatch")
		case created:
			log.Warn("reconcile: payment found whose notification never came; forwarded",
				zap.String("event_id", ev.ID), zap.String("transaction_id", q.TransactionID))
			s.Service.obs.Reconciled(m.Name, "paid")
		}
		rc.schedule(ctx, log, o, time.Time{})
		return
	case err == nil && (q.TradeState == TradeStateClosed || q.TradeState == TradeStateRevoked):
		if err := rc.ledger.SetOrderState(ctx, o.MchID, o.OutTradeNo, ledger.OrderClosed, now); err != nil {
			log.Error("reconcile: recording the close", zap.Error(err))
		}
		rc.schedule(ctx, log, o, time.Time{})
		return
	case err != nil && callErrorKind(err) == NotFound:
		// Not (yet) known to WeChat: like unpaid.
	case err != nil:
		log.Warn("reconcile: order query failed; will retry", zap.Error(err))
		rc.schedule(ctx, log, o, nextCheck(s.Delay, o, now))
		return
	}
	// Unpaid.
	beingPaid := now.Before(o.ExpiresAt.Add(userPayingGrace)) // when USERPAYING is worth asking again soon
	if err == nil && q.TradeState == TradeStateUserPaying && beingPaid {
		// The payer is entering the password: neither paid nor to be
		// closed yet; WeChat advises asking again shortly.
		rc.schedule(ctx, log, o, now.Add(userPayingRecheck))
		return
	}
	if err != nil && o.PrepayID == "" && !now.Before(o.ExpiresAt) {
		// Recorded before a placement whose answer never came, and WeChat
		// does not know it: nobody was given anything to pay it with, and
		// its time is over.
		if err := rc.ledger.SetOrderState(ctx, o.MchID, o.OutTradeNo, ledger.OrderClosed, now); err != nil {
			log.Error("reconcile: recording the close", zap.Error(err))
		}
		log.Info("reconcile: expired order that WeChat never created recorded closed")
		rc.schedule(ctx, log, o, time.Time{})
		return
	}
	if !now.Before(o.ExpiresAt) {
		if s.CloseExpired {
			if err := m.API.CloseOrder(cctx, o.AppID, o.OutTradeNo); err != nil && callErrorCode(err) != CodeOrderClosed {
				switch callErrorCode(err) {
				case CodeOrderPaid:
					// Paid at the last moment: the next check finds it.
					rc.schedule(ctx, log, o, now)
					return
				case CodeUserPaying:
					// Being paid: not closed; ask again shortly (later
					// and later once the grace is over).
					next := now.Add(userPayingRecheck)
					if !beingPaid {
						next = nextCheck(s.Delay, o, now)
					}
					rc.schedule(ctx, log, o, next)
					return
				}
				log.Warn("reconcile: closing an expired order failed; will retry", zap.Error(err))
				rc.schedule(ctx, log, o, now.Add(time.Minute))
				return
			}
			if err := rc.ledger.SetOrderState(ctx, o.MchID, o.OutTradeNo, ledger.OrderClosed, now); err != nil {
				log.Error("reconcile: recording the close", zap.Error(err))
			}
			log.Info("reconcile: expired order closed")
			s.Service.obs.Reconciled(m.Name, "closed")
		}
		rc.schedule(ctx, log, o, time.Time{})
		return
	}
	rc.schedule(ctx, log, o, nextCheck(s.Delay, o, now))
}

// Codes of WeChat's refusals that the gateway acts on, under API v2's
// names; an API version that names them otherwise puts these in
// CallError.Code.
const (
	CodeOrderPaid   = "ORDERPAID"
	CodeOrderClosed = "ORDERCLOSED"
	// CodeUserPaying: the payer is paying (entering the password); the
	// order was not closed and may still be paid.
	CodeUserPaying = "USERPAYING"
	// CodeSystemError: WeChat failed itself; the call's effect is unknown
	// and the same call may be made again.
	CodeSystemError = "SYSTEMERROR"
)

func callErrorKind(err error) CallErrorKind {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Kind
	}
	return -1
}

func callErrorCode(err error) string {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// nextCheck is the time of an order's next check: the delay doubling with
// each check made, and one last check at the order's expiry.
func nextCheck(delay time.Duration, o *ledger.Order, now time.Time) time.Time {
	d := delay
	for i := 0; i < o.Checks && d < time.Hour; i++ {
		d *= 2
	}
	t := now.Add(d)
	if t.After(o.ExpiresAt) {
		t = o.ExpiresAt
	}
	if !t.After(now) {
		t = now.Add(delay)
	}
	return t
}

func (rc *Reconciler) schedule(ctx context.Context, log *zap.Logger, o *ledger.Order, next time.Time) {
	if err := rc.ledger.ScheduleCheck(ctx, o.MchID, o.OutTradeNo, next, o.Checks+1); err != nil && ctx.Err() == nil {
		log.Error("reconcile: scheduling the next check", zap.Error(err))
	}
}
