package caddymodule

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// Reconcile configures the reconciliation job: for orders the ledger holds
// as unpaid once their notification is overdue, it asks WeChat (orderquery),
// records and forwards a payment it finds (as the notification would have
// been), and optionally closes orders past their expiry. With several
// gateways on one ledger, one runs it at a time (a lease in storage).
type Reconcile struct {
	// Turns the job off.
	Disabled bool `json:"disabled,omitempty"`

	// How long after an order is placed it is first checked; later checks
	// back off (doubling) until the order's expiry (time_expire, or the
	// prepay_id's 2 hours). Default: 5m.
	Delay caddy.Duration `json:"delay,omitempty"`

	// Close orders still unpaid at their expiry (closeorder), so that they
	// can no longer be paid. Default: off.
	CloseExpired bool `json:"close_expired,omitempty"`
}

// reconcileSetup is what a running configuration gives the job.
type reconcileSetup struct {
	app          *App
	merchants    map[string]*merchant // by mch_id
	delay        time.Duration
	closeExpired bool
	logger       *zap.Logger
}

// reconciler runs the job for one ledger; the configurations sharing the
// ledger hand it their setup as they start.
type reconciler struct {
	store  ledger.Store
	holder string
	setup  atomic.Pointer[reconcileSetup]
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func newReconciler(st ledger.Store) *reconciler {
	return &reconciler{store: st, holder: "wxpay-" + rand.Text()}
}

// configure sets (or clears, with nil) the current setup and starts the
// loop on first use.
func (rc *reconciler) configure(s *reconcileSetup) {
	rc.setup.Store(s)
	if s == nil {
		return
	}
	rc.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		rc.cancel = cancel
		rc.done = make(chan struct{})
		go rc.loop(ctx)
	})
}

// release clears the setup if it is still app's (a reload may have put a
// newer one in place already).
func (rc *reconciler) release(app *App) {
	if s := rc.setup.Load(); s != nil && s.app == app {
		rc.setup.CompareAndSwap(s, nil)
	}
}

func (rc *reconciler) stop() {
	if rc.cancel != nil {
		rc.cancel()
		<-rc.done
	}
}

func (rc *reconciler) loop(ctx context.Context) {
	defer close(rc.done)
	for {
		wait := 5 * time.Second
		if s := rc.setup.Load(); s != nil && s.delay > 0 {
			wait = min(max(s.delay/5, 50*time.Millisecond), 30*time.Second)
			rc.round(ctx, s, wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// round checks the orders due, if this process holds the lease.
func (rc *reconciler) round(ctx context.Context, s *reconcileSetup, tick time.Duration) {
	now := time.Now()
	ok, err := rc.store.TryLease(ctx, "reconcile", rc.holder, now, 3*tick+time.Second)
	if err != nil || !ok {
		if err != nil && ctx.Err() == nil {
			s.logger.Error("reconcile: taking the lease", zap.Error(err))
		}
		return
	}
	orders, err := rc.store.OrdersToCheck(ctx, now, 50)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Error("reconcile: reading orders", zap.Error(err))
		}
		return
	}
	for _, o := range orders {
		if ctx.Err() != nil {
			return
		}
		rc.check(ctx, s, o, time.Now())
	}
}

// check asks WeChat about one order and decides what comes next.
func (rc *reconciler) check(ctx context.Context, s *reconcileSetup, o *ledger.Order, now time.Time) {
	log := s.logger.With(zap.String("mch_id", o.MchID), zap.String("out_trade_no", o.OutTradeNo))
	m, ok := s.merchants[o.MchID]
	if !ok {
		// A merchant no longer configured: nothing to ask with.
		rc.schedule(ctx, log, o, time.Time{})
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := m.client.QueryOrder(cctx, o.AppID, o.OutTradeNo)
	var ae *wxpay.APIError
	switch {
	case err == nil && q.Paid():
		ev, created, err := s.app.recordQueriedPayment(ctx, m, q, now)
		if err != nil {
			log.Error("reconcile: recording the payment found", zap.Error(err))
			rc.schedule(ctx, log, o, rc.next(s, o, now))
			return
		}
		if created {
			log.Warn("reconcile: payment found whose notification never came; forwarded",
				zap.String("event_id", ev.ID), zap.String("transaction_id", q.TransactionID))
		}
		rc.schedule(ctx, log, o, time.Time{})
		return
	case err == nil && (q.TradeState == wxpay.TradeStateClosed || q.TradeState == wxpay.TradeStateRevoked):
		if err := rc.store.SetOrderState(ctx, o.MchID, o.OutTradeNo, ledger.OrderClosed, now); err != nil {
			log.Error("reconcile: recording the close", zap.Error(err))
		}
		rc.schedule(ctx, log, o, time.Time{})
		return
	case err != nil && errors.As(err, &ae) && ae.Code() == "ORDERNOTEXIST":
		// Not (yet) known to WeChat: like unpaid.
	case err != nil:
		log.Warn("reconcile: orderquery failed; will retry", zap.Error(err))
		rc.schedule(ctx, log, o, rc.next(s, o, now))
		return
	}
	// Unpaid.
	if !now.Before(o.ExpiresAt) {
		if s.closeExpired {
			if err := m.client.CloseOrder(cctx, o.AppID, o.OutTradeNo); err != nil && !(errors.As(err, &ae) && ae.Code() == "ORDERCLOSED") {
				if errors.As(err, &ae) && ae.Code() == "ORDERPAID" {
					// Paid at the last moment: the next check finds it.
					rc.schedule(ctx, log, o, now)
					return
				}
				log.Warn("reconcile: closing an expired order failed; will retry", zap.Error(err))
				rc.schedule(ctx, log, o, now.Add(time.Minute))
				return
			}
			if err := rc.store.SetOrderState(ctx, o.MchID, o.OutTradeNo, ledger.OrderClosed, now); err != nil {
				log.Error("reconcile: recording the close", zap.Error(err))
			}
			log.Info("reconcile: expired order closed")
		}
		rc.schedule(ctx, log, o, time.Time{})
		return
	}
	rc.schedule(ctx, log, o, rc.next(s, o, now))
}

// next is the time of the next check: the delay doubling with each check,
// and one last check at the order's expiry.
func (rc *reconciler) next(s *reconcileSetup, o *ledger.Order, now time.Time) time.Time {
	d := s.delay
	for i := 0; i < o.Checks && d < time.Hour; i++ {
		d *= 2
	}
	t := now.Add(d)
	if t.After(o.ExpiresAt) {
		t = o.ExpiresAt
	}
	if !t.After(now) {
		t = now.Add(s.delay)
	}
	return t
}

func (rc *reconciler) schedule(ctx context.Context, log *zap.Logger, o *ledger.Order, next time.Time) {
	if err := rc.store.ScheduleCheck(ctx, o.MchID, o.OutTradeNo, next, o.Checks+1); err != nil && ctx.Err() == nil {
		log.Error("reconcile: scheduling the next check", zap.Error(err))
	}
}
