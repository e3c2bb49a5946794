package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// prepayLifetime is how long WeChat keeps a prepay_id valid.
const prepayLifetime = 2 * time.Hour

// reuseMargin keeps a recorded prepay_id from being handed out just before
// it expires.
const reuseMargin = 5 * time.Minute

// contentHash identifies an order's content: every field sent to WeChat
// except the client's IP, which may differ between two tries of one order.
func contentHash(r *wxpay.UnifiedOrderRequest) string {
	p := r.Params()
	p.Delete("spbill_create_ip")
	sort.Slice(p, func(i, j int) bool { return p[i].Name < p[j].Name })
	h := sha256.New()
	for _, f := range p {
		h.Write([]byte(f.Name))
		h.Write([]byte{0})
		h.Write([]byte(f.Value))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// expiry is when the order's prepay_id stops being usable: 2 hours after it
// was issued, or the order's own time_expire if earlier.
func expiry(r *wxpay.UnifiedOrderRequest, now time.Time) time.Time {
	exp := now.Add(prepayLifetime)
	if r.TimeExpire != "" {
		if t, err := time.ParseInLocation(wxpay.TimeLayout, r.TimeExpire, wxpay.Beijing); err == nil && t.Before(exp) {
			exp = t
		}
	}
	return exp
}

// placeOrder places an order, or answers the one recorded: the same
// out_trade_no with the same content within the prepay_id's life gets the
// recorded prepay_id and fresh pay parameters without a call to WeChat;
// with other content it is refused as WeChat would refuse it.
func (a *App) placeOrder(ctx context.Context, m *merchant, r *wxpay.UnifiedOrderRequest, now time.Time) (*OrderResponse, *apiError) {
	var store ledger.Store
	if a.ledger != nil {
		store = a.ledger.store
	}
	hash := contentHash(r)
	var known *ledger.Order
	if store != nil {
		o, err := store.GetOrder(ctx, m.mchID, r.OutTradeNo)
		switch {
		case err == nil:
			known = o
		case !errors.Is(err, ledger.ErrNotFound):
			// The ledger is an optimisation here: WeChat itself
			// refuses a reused number. Go on without it.
			a.logger.Error("reading the order ledger", zap.String("out_trade_no", r.OutTradeNo), zap.Error(err))
		}
	}
	if known != nil {
		switch {
		case known.State == ledger.OrderPaid:
			return nil, &apiError{status: http.StatusConflict, code: "ORDERPAID", message: "the order is already paid"}
		case known.ContentHash != hash:
			return nil, &apiError{status: http.StatusConflict, code: "OUT_TRADE_NO_USED", message: "out_trade_no was used for an order with other content"}
		case known.State == ledger.OrderNotPay && known.PrepayID != "" && now.Add(reuseMargin).Before(known.ExpiresAt):
			resp := &wxpay.UnifiedOrderResponse{
				AppID: known.AppID, TradeType: known.TradeType, PrepayID: known.PrepayID,
				CodeURL: known.CodeURL, MWebURL: known.MWebURL,
			}
			return orderAnswer(m, r, resp, now)
		}
	}
	resp, err := m.client.UnifiedOrder(ctx, r)
	if err != nil {
		return nil, weChatError(err)
	}
	if store != nil {
		o := &ledger.Order{
			MchID: m.mchID, OutTradeNo: r.OutTradeNo, AppID: r.AppID, TradeType: r.TradeType,
			TotalFee: r.TotalFee, ContentHash: hash, PrepayID: resp.PrepayID, CodeURL: resp.CodeURL,
			MWebURL: resp.MWebURL, State: ledger.OrderNotPay, CreatedAt: now, ExpiresAt: expiry(r, now), UpdatedAt: now,
		}
		if d := a.reconcileDelay(); d > 0 {
			o.NextCheckAt = now.Add(d)
		}
		if known != nil {
			err = store.ReplaceOrder(ctx, o)
		} else {
			err = store.PutOrder(ctx, o)
		}
		if err != nil && !errors.Is(err, ledger.ErrExists) {
			// WeChat has the order; only the cross-check of its
			// notification is lost. Do not fail the payment for it.
			a.logger.Error("recording an order", zap.String("out_trade_no", r.OutTradeNo), zap.Error(err))
		}
	}
	return orderAnswer(m, r, resp, now)
}

// orderAnswer builds the caller's answer with freshly signed client pay
// parameters.
func orderAnswer(m *merchant, r *wxpay.UnifiedOrderRequest, resp *wxpay.UnifiedOrderResponse, now time.Time) (*OrderResponse, *apiError) {
	out := &OrderResponse{
		OutTradeNo: r.OutTradeNo, TradeType: r.TradeType, PrepayID: resp.PrepayID, AppID: r.AppID,
	}
	var err error
	switch r.TradeType {
	case wxpay.TradeTypeJSAPI:
		out.PayParams, err = wxpay.NewJSAPIPayParams(r.AppID, resp.PrepayID, m.key, m.signType, now, wxpay.NonceStr())
	case wxpay.TradeTypeAPP:
		out.PayParams, err = wxpay.NewAPPPayParams(r.AppID, m.mchID, resp.PrepayID, m.key, m.signType, now, wxpay.NonceStr())
	case wxpay.TradeTypeNative:
		out.CodeURL = resp.CodeURL
	case wxpay.TradeTypeMWEB:
		out.MWebURL = resp.MWebURL
	}
	if err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, code: "INTERNAL", message: "cannot sign the pay parameters", err: err}
	}
	return out, nil
}

// recordNotification checks a verified notification against the order the
// gateway placed and stores its event durably, with its outbox entry, in one
// transaction. A duplicate (same merchant and transaction) stores nothing.
func (a *App) recordNotification(ctx context.Context, m *merchant, n *wxpay.Notification, now time.Time) (*event.Event, bool, error) {
	store := a.ledger.store
	ev, err := event.FromNotification(n, now)
	if err != nil {
		return nil, false, err
	}
	payload, err := ev.Marshal()
	if err != nil {
		return nil, false, err
	}
	// The cross-check runs in the event's transaction (RecordPayment), on
	// the ledger's committer: it only compares and, for a mismatch, builds
	// the payment.mismatch event; logging waits until the call returns.
	var diff map[string]event.Discrepancy
	stored := ev
	le := &ledger.Event{
		ID: ev.ID, MchID: m.mchID, Type: ev.Type, OutTradeNo: n.OutTradeNo(), TransactionID: n.TransactionID(),
		Payload: payload, CreatedAt: now, NextAttemptAt: now,
	}
	created, err := store.RecordPayment(ctx, le, func(o *ledger.Order, e *ledger.Event) (string, error) {
		diff, stored = nil, ev
		if o == nil {
			// An order placed outside the gateway: nothing to check it against.
			return "", nil
		}
		diff = discrepancies(o, n)
		switch {
		case len(diff) > 0:
			mm, err := event.FromNotification(n, now)
			if err != nil {
				return "", err
			}
			mm.MarkMismatch(diff)
			b, err := mm.Marshal()
			if err != nil {
				return "", err
			}
			e.Type, e.Payload, stored = mm.Type, b, mm
			return ledger.OrderMismatch, nil
		case n.Succeeded():
			return ledger.OrderPaid, nil
		default:
			return ledger.OrderPayError, nil
		}
	})
	if err != nil {
		return nil, false, err
	}
	if len(diff) > 0 {
		a.logger.Error("notification disagrees with the order: forwarded as payment.mismatch, not as a success",
			zap.String("merchant", m.name), zap.String("out_trade_no", n.OutTradeNo()),
			zap.String("transaction_id", n.TransactionID()), zap.Any("mismatch", diff))
	}
	if created {
		a.ledger.worker.Notify()
	}
	return stored, created, nil
}

// discrepancies lists where a notification disagrees with its order.
func discrepancies(o *ledger.Order, n *wxpay.Notification) map[string]event.Discrepancy {
	diff := map[string]event.Discrepancy{}
	if n.Get("total_fee") == "" && !n.Succeeded() {
		// A failed payment may carry no amount.
	} else if fee, err := n.TotalFee(); err != nil || fee != o.TotalFee {
		diff["total_fee"] = event.Discrepancy{Order: o.TotalFee, Notification: n.Get("total_fee")}
		if err == nil {
			diff["total_fee"] = event.Discrepancy{Order: o.TotalFee, Notification: fee}
		}
	}
	if n.AppID() != o.AppID {
		diff["appid"] = event.Discrepancy{Order: o.AppID, Notification: n.AppID()}
	}
	if n.MchID() != o.MchID {
		diff["mch_id"] = event.Discrepancy{Order: o.MchID, Notification: n.MchID()}
	}
	return diff
}
