package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// Notification is one notification as it reached the gateway: its exact
// bytes, which are verified as they are, never re-encoded.
type Notification struct {
	Header   http.Header
	Body     []byte
	RemoteIP string // for the log
	// Kind is "payment" or "refund" (for metrics); the Accept methods set
	// it, a caller that refuses one before sets it itself.
	Kind string
}

// Notification kinds.
const (
	KindPayment = "payment"
	KindRefund  = "refund"
)

// AcceptPaymentNotification takes one of WeChat's payment notifications
// for merchant m and returns the reply WeChat expects: verify, check that
// it is the merchant's, cross-check it against the order placed, store its
// event durably with its outbox entry (or, without a ledger, deliver it),
// and only then reply that it arrived. Every failure replies with a
// refusal, so that WeChat sends the notification again.
func (s *Service) AcceptPaymentNotification(ctx context.Context, m *Merchant, n Notification) Reply {
	n.Kind = KindPayment
	api, ok := m.notificationAPI(n.Header, n.Body)
	if !ok {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "no API version of the merchant takes this notification", errNoNotificationAPI)
	}
	p, err := api.ParsePaymentNotification(n.Header, n.Body)
	if err != nil {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "invalid notification", err)
	}
	if p.MchID != m.MchID {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "mch_id mismatch",
			fmt.Errorf("notification for mch_id %q reached merchant %s (%s)", p.MchID, m.Name, m.MchID))
	}
	if !m.HasAppID(p.AppID) {
		return s.RefuseNotification(m, n, http.StatusBadRequest, "appid mismatch",
			fmt.Errorf("notification for appid %q is not one of merchant %s's", p.AppID, m.Name))
	}
	if s.ledger == nil {
		ev := event.NewPayment(m.MchID, p.TransactionID, p.OutTradeNo, p.Succeeded, p.Data, s.now())
		if reply, ok := s.deliverBeforeReply(ctx, m, n, ev); !ok {
			return reply
		}
		s.logger.Info("notification delivered",
			zap.String("merchant", m.Name), zap.String("event_id", ev.ID), zap.String("type", ev.Type),
			zap.String("out_trade_no", p.OutTradeNo), zap.String("transaction_id", p.TransactionID))
		s.obs.NotificationTaken(m.Name, KindPayment, "delivered", "")
		return api.NotifyReply(http.StatusOK, "")
	}
	ev, created, err := s.recordPayment(ctx, m, p)
	if err != nil {
		return s.RefuseNotification(m, n, http.StatusServiceUnavailable, "storage failure", err,
			zap.String("out_trade_no", LogText(p.OutTradeNo)), zap.String("transaction_id", LogText(p.TransactionID)))
	}
	if created {
		if ce := s.logger.Check(zapcore.InfoLevel, "notification stored"); ce != nil {
			ce.Write(zap.String("merchant", m.Name), zap.String("event_id", ev.ID),
				zap.String("type", ev.Type), zap.String("out_trade_no", p.OutTradeNo), zap.String("transaction_id", p.TransactionID))
		}
		result := "stored"
		if ev.Type == event.PaymentMismatch {
			result = "mismatch"
		}
		s.obs.NotificationTaken(m.Name, KindPayment, result, "")
	} else {
		s.logger.Info("duplicate notification acknowledged", zap.String("merchant", m.Name), zap.String("event_id", ev.ID))
		s.obs.NotificationTaken(m.Name, KindPayment, "duplicate", "")
	}
	return api.NotifyReply(http.StatusOK, "")
}

// errNoNotificationAPI is the cause of refusing a notification of an API
// version the merchant has no credentials for.
var errNoNotificationAPI = errors.New("an API v2 notification (XML) needs the merchant's api_key; an APIv3 one (Wechatpay-* headers, JSON) its APIv3 credentials")

// ErrSignatureProbe marks WeChat's signature probe: a notification signed
// WECHATPAY/SIGNTEST/…, sent to check that the merchant verifies
// signatures. It must fail, and does; it is logged as the probe it is.
var ErrSignatureProbe = errors.New("WeChat's signature probe (WECHATPAY/SIGNTEST)")

// RefuseNotification logs why a notification is refused and returns the
// refusal WeChat expects (it will send the notification again). ids name
// what a verified notification is about (out_trade_no, event_id…).
func (s *Service) RefuseNotification(m *Merchant, n Notification, status int, reason string, err error, ids ...zap.Field) Reply {
	fields := append([]zap.Field{zap.String("merchant", m.Name), zap.String("remote_ip", n.RemoteIP), zap.String("reason", reason)}, ids...)
	if err != nil {
		fields = append(fields, LogError(err))
	}
	// What anyone may send is logged sampled; the gateway's own failures
	// (5xx: storage, the backend, WeChat's confirmation) every time.
	log := s.refusals
	if status >= http.StatusInternalServerError {
		log = s.logger
	}
	if errors.Is(err, ErrSignatureProbe) {
		log.Info("WeChat's signature probe (WECHATPAY/SIGNTEST) refused, as it must be", fields...)
	} else {
		log.Warn("notification refused; WeChat will retry", fields...)
	}
	kind := n.Kind
	if kind != KindRefund {
		kind = KindPayment
	}
	s.obs.NotificationTaken(m.Name, kind, "refused", notificationReason(status, reason, err))
	return m.NotifyReply(n.Header, n.Body, status, reason)
}

// deliverBeforeReply delivers an event while WeChat waits (no ledger): ok
// when the backend took it; otherwise the refusal to reply.
func (s *Service) deliverBeforeReply(ctx context.Context, m *Merchant, n Notification, ev *event.Event) (Reply, bool) {
	ids := []zap.Field{zap.String("event_id", ev.ID), zap.String("type", ev.Type)}
	for _, k := range []string{"out_trade_no", "transaction_id", "out_refund_no"} {
		if v, ok := ev.Data[k].(string); ok && v != "" {
			ids = append(ids, zap.String(k, LogText(v)))
		}
	}
	payload, err := ev.Marshal()
	if err != nil {
		return s.RefuseNotification(m, n, http.StatusInternalServerError, "internal error", err, ids...), false
	}
	if err := s.direct.Deliver(ctx, ev.ID, payload); err != nil {
		return s.RefuseNotification(m, n, http.StatusServiceUnavailable, "backend did not take the event", err, ids...), false
	}
	return Reply{}, true
}

// recordPayment cross-checks a verified payment against the order the
// gateway placed and stores its event durably, with its outbox entry and
// the order's new state, in one transaction. A payment that disagrees with
// its order is stored as payment.mismatch, with both figures, never as a
// success. A duplicate (same merchant and transaction) stores nothing.
//
// The ledger compares the order with the payment's figures inside the
// event's transaction (one round trip for the usual agreeing payment);
// when they disagree it stores nothing and hands the order back, and the
// mismatch event is built from both and recorded instead. The event says
// whether the payment was checked against an order (order_checked); the
// ledger's filter predicts it, and the ledger refuses an event whose
// prediction is wrong, which is then built the other way.
func (s *Service) recordPayment(ctx context.Context, m *Merchant, p *Payment) (*event.Event, bool, error) {
	now := s.now()
	// The id is the configured merchant's, whatever an answer echoed.
	ev := event.NewPayment(m.MchID, p.TransactionID, p.OutTradeNo, p.Succeeded, p.Data, now)
	change := paymentChange(p)
	held := s.ledger.MayHoldOrder(m.MchID, p.OutTradeNo)
	var (
		created bool
		state   string
		err     error
	)
	if held && !s.ledger.PredictsOrders() {
		// No prediction (several gateways on one database): both
		// payloads, and the transaction stores the one that is so.
		ev.SetOrderChecked(false)
		alt, err := ev.Marshal()
		if err != nil {
			return nil, false, err
		}
		ev.SetOrderChecked(true)
		change.PayloadIfNotHeld = alt
		le, created, state, err := s.recordEventAs(ctx, m, p, ev, change)
		if err != nil {
			return s.recordMismatch(ctx, m, p, ev, err)
		}
		if bytes.Equal(le.Payload, alt) {
			ev.SetOrderChecked(false)
		}
		s.warnIfHeld(m, p, ev, state)
		return ev, created, nil
	}
	for range 3 { // a wrong prediction costs one more try
		ev.SetOrderChecked(held)
		change.Presence = ledger.PresenceNotHeld
		if held {
			change.Presence = ledger.PresenceHeld
		}
		created, state, err = s.recordEvent(ctx, m, p, ev, change)
		switch {
		case errors.Is(err, ledger.ErrOrderNotHeld):
			held = false
			continue
		case errors.Is(err, ledger.ErrOrderHeld):
			held = true
			continue
		}
		break
	}
	if err != nil {
		return s.recordMismatch(ctx, m, p, ev, err)
	}
	s.warnIfHeld(m, p, ev, state)
	return ev, created, nil
}

// warnIfHeld logs a payment event stored held.
func (s *Service) warnIfHeld(m *Merchant, p *Payment, ev *event.Event, state string) {
	if state == ledger.EventHeld {
		s.logger.Warn("payment failure notified after the order was paid: stored, not delivered",
			zap.String("merchant", m.Name), zap.String("out_trade_no", p.OutTradeNo),
			zap.String("transaction_id", p.TransactionID), zap.String("event_id", ev.ID))
	}
}

// recordMismatch records, when the ledger refused a payment's event
// because its order disagrees (err is a *MismatchError), the mismatch
// event instead; any other err is returned as it is.
func (s *Service) recordMismatch(ctx context.Context, m *Merchant, p *Payment, ev *event.Event, err error) (*event.Event, bool, error) {
	var me *ledger.MismatchError
	if !errors.As(err, &me) || me.Order == nil {
		return nil, false, err
	}
	diff := PaymentDiscrepancies(me.Order, p)
	if len(diff) == 0 {
		return nil, false, fmt.Errorf("order %s: the ledger saw a disagreement the gateway does not: %w", p.OutTradeNo, err)
	}
	ev.SetOrderChecked(true)
	ev.MarkMismatch(event.PaymentMismatch, diff)
	created, _, err := s.recordEvent(ctx, m, p, ev, ledger.Change{OrderState: ledger.OrderMismatch})
	if err != nil {
		return nil, false, err
	}
	s.logger.Error("notification disagrees with the order: forwarded as payment.mismatch, not as a success",
		zap.String("merchant", m.Name), zap.String("event_id", ev.ID), zap.String("out_trade_no", p.OutTradeNo),
		zap.String("transaction_id", p.TransactionID), zap.Any("mismatch", diff))
	return ev, created, nil
}

// paymentChange is what a payment changes in the ledger: its order PAID
// (or PAYERROR), if the order agrees with it on the figures
// PaymentDiscrepancies compares (the merchant is the order's key). A
// failure notified once the order is settled is held: stored, never
// delivered, the order left as it is.
func paymentChange(p *Payment) ledger.Change {
	state := ledger.OrderPayError
	if p.Succeeded {
		state = ledger.OrderPaid
	}
	return ledger.Change{OrderState: state, HoldIfSettled: !p.Succeeded, Expect: ledger.OrderFigures{
		Check: true, AppID: p.AppID, TotalFee: p.TotalFee, CheckTotalFee: p.HasTotalFee || p.Succeeded}}
}

// recordEvent stores a payment's event with change and wakes the outbox
// when it is new; state is the event's state as stored.
func (s *Service) recordEvent(ctx context.Context, m *Merchant, p *Payment, ev *event.Event, change ledger.Change) (created bool, state string, err error) {
	_, created, state, err = s.recordEventAs(ctx, m, p, ev, change)
	return created, state, err
}

// recordEventAs is recordEvent that also returns the ledger's event as
// stored (its payload: change may offer two).
func (s *Service) recordEventAs(ctx context.Context, m *Merchant, p *Payment, ev *event.Event, change ledger.Change) (le *ledger.Event, created bool, state string, err error) {
	payload, err := ev.Marshal()
	if err != nil {
		return nil, false, "", err
	}
	now := s.now()
	le = &ledger.Event{
		ID: ev.ID, MchID: m.MchID, Type: ev.Type, OutTradeNo: p.OutTradeNo, TransactionID: p.TransactionID,
		Payload: payload, CreatedAt: now, NextAttemptAt: now,
	}
	created, err = s.ledger.RecordEvent(ctx, le, change)
	if created && le.State == ledger.EventPending && s.outbox != nil {
		s.outbox.Notify()
	}
	return le, created, le.State, err
}

// PaymentDiscrepancies lists where a payment disagrees with the order the
// gateway placed: its amount (a failed payment may carry none), app id or
// merchant. It is nil when they agree.
func PaymentDiscrepancies(o *ledger.Order, p *Payment) map[string]event.Discrepancy {
	var diff map[string]event.Discrepancy
	add := func(field string, d event.Discrepancy) {
		if diff == nil {
			diff = make(map[string]event.Discrepancy, 3)
		}
		diff[field] = d
	}
	switch {
	case !p.HasTotalFee && !p.Succeeded:
	case !p.HasTotalFee:
		add("total_fee", event.Discrepancy{Order: o.TotalFee, Notification: ""})
	case p.TotalFee != o.TotalFee:
		add("total_fee", event.Discrepancy{Order: o.TotalFee, Notification: p.TotalFee})
	}
	if p.AppID != o.AppID {
		add("appid", event.Discrepancy{Order: o.AppID, Notification: p.AppID})
	}
	if p.MchID != o.MchID {
		add("mch_id", event.Discrepancy{Order: o.MchID, Notification: p.MchID})
	}
	return diff
}
