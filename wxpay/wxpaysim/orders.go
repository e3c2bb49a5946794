package wxpaysim

import (
	"fmt"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// Order is a snapshot of an order known to the simulator.
type Order struct {
	// MchID is the merchant that placed the order.
	MchID string `json:"mch_id"`
	// AppID is the app id the order was placed with.
	AppID string `json:"appid"`
	// OutTradeNo is the merchant's order number.
	OutTradeNo string `json:"out_trade_no"`
	// PrepayID is the prepay_id WeChat answered.
	PrepayID string `json:"prepay_id"`
	// TradeType is JSAPI, NATIVE, APP or MWEB.
	TradeType string `json:"trade_type"`
	// NotifyURL is where pay notifications go.
	NotifyURL string `json:"notify_url"`
	// State is StateNotPay, StateSuccess, StatePayError or StateClosed.
	// A refunded order stays StateSuccess (orderquery answers REFUND).
	State string `json:"state"`
	// TotalFee is the order's amount in fen.
	TotalFee int64 `json:"total_fee"`
	// SignType is the sign type the order was placed with; its
	// notifications are signed with it.
	SignType wxpay.SignType `json:"sign_type"`
	// Params is the unifiedorder request as received, sign included. For
	// an order placed with APIv3 it holds the API v2 equivalents of the
	// request's fields (body for description, total_fee, openid, attach,
	// time_expire in yyyyMMddHHmmss…), as bills and v2 queries show them.
	Params wxpay.Params `json:"-"`
	// CreatedAt is when the order and its prepay_id were created.
	CreatedAt time.Time `json:"created_at"`
	// CodeURL is the NATIVE order's QR code content.
	CodeURL string `json:"code_url,omitempty"`
	// MWebURL is the MWEB order's H5 payment page.
	MWebURL string `json:"mweb_url,omitempty"`
	// TransactionID is WeChat's number of the last payment, once Pay ran.
	TransactionID string `json:"transaction_id,omitempty"`
	// APIVersion is the API the order was placed with, APIVersion2 or
	// APIVersion3; its pay notifications use that API's format. Queries,
	// closing and refunds work through either API.
	APIVersion int `json:"api_version"`
}

// order is the simulator's mutable record of an order, guarded by
// Simulator.mu.
type order struct {
	Order
	expireAt   time.Time // time_expire; zero when the request had none
	paidAt     time.Time // time_end of the last payment
	notifyBody []byte    // the last payment's notification, for SendNotification
	refunds    []*refund // in creation order
	refunded   int64     // the sum of the refunds' refund_fee
	v3Content  string    // an APIv3 order's placement, canonical, for idempotency
	// mwebIssued is when the MWEB order's current mweb_url was issued:
	// it opens the payment sheet for MWebURLLifetime from then.
	mwebIssued time.Time
}

func (o *order) snapshot() Order {
	c := o.Order
	c.Params = o.Params.Clone()
	return c
}

// Order returns a snapshot of an order known to the simulator.
func (s *Simulator) Order(mchID, outTradeNo string) (Order, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderKey{mchID, outTradeNo}]
	if !ok {
		return Order{}, false
	}
	return o.snapshot(), true
}

// Orders returns snapshots of every order known, in the order they were
// created.
func (s *Simulator) Orders() []Order {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Order, len(s.orderList))
	for i, o := range s.orderList {
		out[i] = o.snapshot()
	}
	return out
}

// CloseOrder closes an order that is not paid, as the merchant's closeorder
// call or WeChat's expiry would: it can no longer be paid, and placing it
// again answers ORDERCLOSED. Closing a closed order is not an error.
func (s *Simulator) CloseOrder(mchID, outTradeNo string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.orders[orderKey{mchID, outTradeNo}]
	if !ok {
		return fmt.Errorf("close order %s of mch_id %s: %w", outTradeNo, mchID, ErrUnknownOrder)
	}
	if o.State == StateSuccess {
		return fmt.Errorf("close order %s of mch_id %s: %w", outTradeNo, mchID, ErrOrderPaid)
	}
	o.State = StateClosed
	s.logf("wxpaysim: order %s of mch_id %s closed", outTradeNo, mchID)
	return nil
}
