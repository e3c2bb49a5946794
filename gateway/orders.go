package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// PrepayLifetime is how long WeChat keeps a prepay_id valid.
const PrepayLifetime = 2 * time.Hour

// reuseMargin keeps a recorded prepay_id from being handed out just before
// it expires.
const reuseMargin = 5 * time.Minute

// mwebReuse is how long after it was issued a recorded mweb_url (H5) is
// handed out again: WeChat's opens the payment sheet for 5 minutes only
// ("MWEB_URL生成后，有效期为5分钟，如超时请重新生成"), so after 4 (a minute
// left to the payer) the order is placed with WeChat again, which issues
// a new one.
const mwebReuse = 4 * time.Minute

// TimeLayout is the layout of the gateway's times (time_expire, time_end):
// WeChat's API v2 yyyyMMddHHmmss, in Beijing time.
const TimeLayout = "20060102150405"

// Beijing is the time zone of WeChat's times.
var Beijing = time.FixedZone("CST", 8*60*60)

// PlaceOrder places an order for merchant m, or answers the one recorded:
// the same out_trade_no with the same content within the prepay_id's life
// gets the recorded prepay_id and freshly signed pay parameters without a
// call to WeChat; with other content, or once paid, it is refused as
// WeChat would refuse it. clientIP is the default spbill_create_ip.
//
// With a ledger, the order is recorded before WeChat is asked to create
// it, so that no order WeChat knows is missing from the ledger: its
// notification is always checked against it, and reconciliation sees it.
// An order that cannot be recorded is answered 503 and WeChat is not
// asked. When WeChat refuses the order (it then does not know it), the
// record is removed again, so that the number can be placed with
// corrected content; when the call's effect is unknown (no answer, an
// answer that fails verification), the record stays, and reconciliation
// asks WeChat about it. What WeChat answered (prepay_id, code_url,
// mweb_url) is recorded before the pay parameters are handed out; if that
// record fails, the caller gets 503 without them.
func (s *Service) PlaceOrder(ctx context.Context, m *Merchant, req *OrderRequest, clientIP string) (*OrderResponse, error) {
	resp, err := s.placeOrder(ctx, m, req, clientIP)
	outcome := "ok"
	fields := func() []zap.Field {
		return []zap.Field{zap.String("merchant", m.Name), zap.String("out_trade_no", LogText(req.OutTradeNo)),
			zap.String("trade_type", TradeTypeLabel(req.TradeType)), zap.Int64("total_fee", req.TotalFee)}
	}
	if err == nil {
		// Every order passes here: its entry is built only when logged.
		if ce := s.logger.Check(zap.InfoLevel, "order placed"); ce != nil {
			ce.Write(fields()...)
		}
	} else {
		e := ErrorFor(err)
		outcome = e.Code
		fields := append(fields(), zap.Int("status", e.Status), zap.String("code", e.Code), zap.String("message", LogText(e.Message)))
		var ce *CallError
		if errors.As(err, &ce) && ce.RequestID != "" {
			fields = append(fields, zap.String("request_id", LogText(ce.RequestID)))
		}
		if e.Err != nil {
			fields = append(fields, LogError(e.Err))
		}
		msg := "order not placed"
		switch {
		case e.Status == StatusClientClosed:
			msg = "order not placed: the caller went away"
		case e.Status < 500:
			msg = "order refused"
		}
		s.logger.Log(LogLevel(e), msg, fields...)
	}
	s.obs.OrderPlaced(m.Name, TradeTypeLabel(req.TradeType), outcome)
	return resp, err
}

// TradeTypeLabel is a trade type as a metric's label: one of the four,
// or "invalid" for anything a caller sent that is none of them.
func TradeTypeLabel(t string) string {
	switch t {
	case TradeTypeJSAPI, TradeTypeNative, TradeTypeAPP, TradeTypeMWEB:
		return t
	}
	return "invalid"
}

func (s *Service) placeOrder(ctx context.Context, m *Merchant, req *OrderRequest, clientIP string) (*OrderResponse, error) {
	req, err := s.withOpenIDToken(m, req)
	if err != nil {
		return nil, err
	}
	o, err := m.newOrder(req, clientIP)
	if err != nil {
		return nil, err
	}
	now := s.now()
	hash := contentHash(o)
	var lo *ledger.Order // the order as recorded for this placement
	fresh := false       // lo was recorded by this placement
	if s.ledger != nil {
		lo = &ledger.Order{
			MchID: m.MchID, OutTradeNo: o.OutTradeNo, AppID: o.AppID, TradeType: o.TradeType,
			TotalFee: o.TotalFee, ContentHash: hash, State: ledger.OrderNotPay,
			CreatedAt: now, ExpiresAt: expiry(o, now), UpdatedAt: now,
		}
		if s.reconcileDelay > 0 {
			lo.NextCheckAt = now.Add(s.reconcileDelay)
		}
		var known *ledger.Order
		if known, fresh, err = s.recordPlacement(ctx, lo); err != nil {
			return nil, err
		}
		if known != nil {
			switch {
			case known.State == ledger.OrderPaid:
				return nil, &Error{Status: http.StatusConflict, Code: "ORDERPAID", Message: "the order is already paid"}
			case known.ContentHash != hash:
				return nil, &Error{Status: http.StatusConflict, Code: "OUT_TRADE_NO_USED", Message: "out_trade_no was used for an order with other content"}
			case known.State == ledger.OrderNotPay && known.PrepayID != "" && now.Add(reuseMargin).Before(known.ExpiresAt) &&
				(known.TradeType != TradeTypeMWEB || now.Before(known.UpdatedAt.Add(mwebReuse))):
				return orderResponse(m, o, &Prepay{PrepayID: known.PrepayID, CodeURL: known.CodeURL, MWebURL: known.MWebURL}, now)
			}
		}
	}
	p, err := m.API.Prepay(ctx, o)
	if err != nil {
		if fresh && wechatRefused(err) {
			if ferr := s.ledger.ForgetOrder(ctx, m.MchID, o.OutTradeNo, hash); ferr != nil {
				s.logger.Error("removing the record of an order WeChat refused", zap.String("out_trade_no", o.OutTradeNo), LogError(ferr))
			}
		}
		return nil, err
	}
	if s.ledger != nil {
		lo.PrepayID, lo.CodeURL, lo.MWebURL = p.PrepayID, p.CodeURL, p.MWebURL
		if err := s.ledger.RecordPrepay(ctx, lo); err != nil {
			return nil, storageError("WeChat's answer to the order could not be recorded, so its pay parameters are not handed out; place it again", err)
		}
	}
	return orderResponse(m, o, p, now)
}

// recordPlacement records lo before WeChat is asked to create it, unless
// the ledger holds its number already: then it answers the order recorded
// (known), and fresh is false.
func (s *Service) recordPlacement(ctx context.Context, lo *ledger.Order) (known *ledger.Order, fresh bool, err error) {
	for range 2 {
		if s.ledger.MayHoldOrder(lo.MchID, lo.OutTradeNo) {
			known, err = s.ledger.GetOrder(ctx, lo.MchID, lo.OutTradeNo)
			switch {
			case err == nil:
				return known, false, nil
			case !errors.Is(err, ledger.ErrNotFound):
				return nil, false, storageError("the order ledger could not be read, so the order was not placed", err)
			}
		}
		switch err = s.ledger.PutOrder(ctx, lo); {
		case err == nil:
			return nil, true, nil
		case !errors.Is(err, ledger.ErrExists):
			return nil, false, storageError("the order could not be recorded, so it was not placed; place it again", err)
		}
		// Recorded meanwhile by a concurrent placement (or forgotten
		// between the two steps): read it again.
	}
	return nil, false, storageError("the order's record changed while it was placed; place it again", err)
}

// storageError is the 503 of a request the ledger could not serve.
func storageError(message string, err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "STORAGE_UNAVAILABLE", Message: message, Err: err}
}

// newOrder fills in the merchant's defaults and validates the order.
func (m *Merchant) newOrder(req *OrderRequest, clientIP string) (*Order, error) {
	o := &Order{OrderRequest: *req, NotifyURL: m.NotifyURL}
	var err error
	if o.AppID, err = m.appID(req.AppID); err != nil {
		return nil, err
	}
	if o.SpbillCreateIP == "" {
		o.SpbillCreateIP = clientIP
	}
	if err := m.API.ValidateOrder(o); err != nil {
		return nil, err
	}
	return o, nil
}

// orderResponse answers a placed order with freshly signed client pay
// parameters.
func orderResponse(m *Merchant, o *Order, p *Prepay, now time.Time) (*OrderResponse, error) {
	out := &OrderResponse{OutTradeNo: o.OutTradeNo, TradeType: o.TradeType, PrepayID: p.PrepayID, AppID: o.AppID}
	switch o.TradeType {
	case TradeTypeNative:
		out.CodeURL = p.CodeURL
	case TradeTypeMWEB:
		out.MWebURL = p.MWebURL
	}
	pp, err := m.API.PayParams(o, p, now)
	if err != nil {
		return nil, internalError("cannot sign the pay parameters", err)
	}
	out.PayParams = pp
	return out, nil
}

// contentHash identifies an order's content: every field sent to WeChat
// except the client's IP, which may differ between two tries of one order,
// under API v2's names, sorted by name, each name and value followed by a
// NUL byte, hashed with SHA-256. Ledgers written by earlier versions hold
// this hash: it must not change.
func contentHash(o *Order) string {
	var buf [1024]byte // on the stack for the usual order
	in := buf[:0]
	add := func(name, value string) {
		if value != "" {
			in = append(append(append(append(in, name...), 0), value...), 0)
		}
	}
	// In byte order of the names.
	add("appid", o.AppID)
	add("attach", o.Attach)
	add("body", o.Body)
	add("detail", o.Detail)
	add("goods_tag", o.GoodsTag)
	add("notify_url", o.NotifyURL)
	add("openid", o.OpenID)
	add("out_trade_no", o.OutTradeNo)
	add("product_id", o.ProductID)
	add("scene_info", o.SceneInfo)
	add("time_expire", o.TimeExpire)
	var fee [20]byte
	add("total_fee", string(strconv.AppendInt(fee[:0], o.TotalFee, 10)))
	add("trade_type", o.TradeType)
	sum := sha256.Sum256(in)
	return hex.EncodeToString(sum[:])
}

// expiry is when the order's prepay_id stops being usable: PrepayLifetime
// after it was issued, or the order's own time_expire if earlier.
func expiry(o *Order, now time.Time) time.Time {
	exp := now.Add(PrepayLifetime)
	if o.TimeExpire != "" {
		if t, err := time.ParseInLocation(TimeLayout, o.TimeExpire, Beijing); err == nil && t.Before(exp) {
			exp = t
		}
	}
	return exp
}

// appIDFor picks the app id to ask WeChat about an order with: the one
// asked for (which must be the merchant's), the recorded order's, or the
// merchant's default.
func (s *Service) appIDFor(ctx context.Context, m *Merchant, asked, outTradeNo string) (string, error) {
	if asked != "" {
		return m.appID(asked)
	}
	if id := s.recordedAppID(ctx, m, outTradeNo); id != "" {
		return id, nil
	}
	return m.AppIDs[0], nil
}

// recordedAppID is the app id of the order the ledger holds as
// outTradeNo; "" when it holds none (or has no ledger).
func (s *Service) recordedAppID(ctx context.Context, m *Merchant, outTradeNo string) string {
	if s.ledger == nil || outTradeNo == "" {
		return ""
	}
	if o, err := s.ledger.GetOrder(ctx, m.MchID, outTradeNo); err == nil {
		return o.AppID
	}
	return ""
}

// QueryOrder asks WeChat for an order's state (with app id appID, or the
// one appIDFor picks when it is ""). A payment whose notification never
// came is recorded and forwarded now, under the id its notification would
// have had.
func (s *Service) QueryOrder(ctx context.Context, m *Merchant, outTradeNo, appID string) (*OrderQueryResponse, error) {
	appID, err := s.appIDFor(ctx, m, appID, outTradeNo)
	if err != nil {
		return nil, err
	}
	q, err := m.API.QueryOrder(ctx, appID, outTradeNo)
	if err != nil {
		return nil, err
	}
	if q.Paid() && q.Payment != nil && s.ledger != nil {
		if _, _, err := s.recordPayment(ctx, m, q.Payment); err != nil {
			s.logger.Error("recording a payment found by a query", zap.String("out_trade_no", outTradeNo), zap.Error(err))
		}
	}
	return q, nil
}

// CloseOrder closes an unpaid order with WeChat and records it closed.
func (s *Service) CloseOrder(ctx context.Context, m *Merchant, outTradeNo, appID string) error {
	appID, err := s.appIDFor(ctx, m, appID, outTradeNo)
	if err != nil {
		return err
	}
	if err := m.API.CloseOrder(ctx, appID, outTradeNo); err != nil {
		return err
	}
	s.orderClosed(ctx, m.MchID, outTradeNo, s.now())
	return nil
}

// orderClosed records a close in the ledger, and that the order needs no
// more checks.
func (s *Service) orderClosed(ctx context.Context, mchID, outTradeNo string, now time.Time) {
	if s.ledger == nil {
		return
	}
	if err := s.ledger.SetOrderState(ctx, mchID, outTradeNo, ledger.OrderClosed, now); err != nil && !errors.Is(err, ledger.ErrNotFound) {
		s.logger.Error("recording a closed order", zap.String("out_trade_no", outTradeNo), zap.Error(err))
	}
	if err := s.ledger.ScheduleCheck(ctx, mchID, outTradeNo, time.Time{}, 0); err != nil && !errors.Is(err, ledger.ErrNotFound) {
		s.logger.Error("unscheduling a closed order's checks", zap.String("out_trade_no", outTradeNo), zap.Error(err))
	}
}

// NativeCodeURL returns the code_url of a NATIVE order the gateway placed
// (as recorded in the ledger), for a QR code, while it can still be paid:
// 404 for an order the gateway did not record or that has no code_url,
// 409 once it is paid, closed or its code expired.
func (s *Service) NativeCodeURL(ctx context.Context, m *Merchant, outTradeNo string) (string, error) {
	if s.ledger == nil {
		return "", &Error{Status: http.StatusNotFound, Code: "NO_LEDGER",
			Message: "the QR code is drawn from the order the gateway recorded; with ack upstream it records none"}
	}
	o, err := s.ledger.GetOrder(ctx, m.MchID, outTradeNo)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return "", &Error{Status: http.StatusNotFound, Code: "ORDERNOTEXIST",
			Message: fmt.Sprintf("no order %s was placed through the gateway", outTradeNo)}
	case err != nil:
		return "", storageError("the order ledger could not be read", err)
	case o.CodeURL == "":
		return "", &Error{Status: http.StatusNotFound, Code: "NO_CODE_URL",
			Message: fmt.Sprintf("order %s has no code_url (trade type %s; only NATIVE orders have one)", outTradeNo, o.TradeType)}
	case o.State == ledger.OrderPaid || o.State == ledger.OrderMismatch:
		return "", &Error{Status: http.StatusConflict, Code: CodeOrderPaid, Message: fmt.Sprintf("order %s is paid", outTradeNo)}
	case o.State == ledger.OrderClosed:
		return "", &Error{Status: http.StatusConflict, Code: CodeOrderClosed, Message: fmt.Sprintf("order %s is closed", outTradeNo)}
	case !s.now().Before(o.ExpiresAt):
		return "", &Error{Status: http.StatusConflict, Code: "ORDER_EXPIRED",
			Message: fmt.Sprintf("the code_url of order %s expired at %s", outTradeNo, o.ExpiresAt.Format(time.RFC3339))}
	}
	return o.CodeURL, nil
}
