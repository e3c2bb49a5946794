package wxpaysim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// OpenIDOther is the openid of the payer in notifications of orders that
// are not JSAPI (which carry the order's openid).
const OpenIDOther = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

// bankType is the payer's bank (bank_type) in notifications, queries and
// bills.
const bankType = "CMC"

// Kinds of notification (NotificationRecord.Kind).
const (
	KindPayment = "payment" // a signed pay notification
	KindRefund  = "refund"  // a refund notification with an encrypted req_info
)

// maxAttemptBody is how much of a merchant's answer an Attempt keeps.
const maxAttemptBody = 1 << 10

// maxAnswerRead is how much of a merchant's answer is read to decide
// whether it acknowledges the notification.
const maxAnswerRead = 64 << 10

// PayOptions says which order Pay pays and how.
type PayOptions struct {
	// PrepayID names the order to pay by its prepay_id ...
	PrepayID string
	// ... or OutTradeNo by the merchant's number (with MchID when several
	// merchants have an order with that number).
	OutTradeNo string
	// MchID is the merchant of OutTradeNo.
	MchID string
	// Fail sends result_code FAIL (err_code NOTENOUGH) instead of SUCCESS
	// and leaves the order in StatePayError, from which it can be paid again.
	Fail bool
	// Duplicate sends the notification twice at once, as WeChat does from
	// two servers: two deliveries, each with its own retries.
	Duplicate bool
	// Extra fields are added to the notification (e.g. a field WeChat adds
	// later) and signed. A field the notification has already is replaced;
	// sign cannot be set.
	Extra wxpay.Params
	// TotalFee, when > 0, is notified (as total_fee and cash_fee) instead of
	// the order's amount, for mismatch tests. orderquery still answers the
	// order's amount.
	TotalFee int64
	// Lost pays the order but sends no notification, as when WeChat's
	// notifications never reach the merchant: orderquery, refunds and the
	// bill see the payment, and SendNotification can deliver it later.
	// It cannot be combined with Duplicate.
	Lost bool
	// V3Fault, for an order placed with APIv3, makes every delivery of
	// this payment's notification carry that defect (see V3Fault). It
	// cannot be combined with Lost or Fail. SendNotification later sends
	// the notification without it.
	V3Fault V3Fault
}

// Payment is the result of Pay.
type Payment struct {
	// MchID is the order's merchant.
	MchID string `json:"mch_id"`
	// AppID is the order's app id.
	AppID string `json:"appid"`
	// OutTradeNo is the merchant's order number.
	OutTradeNo string `json:"out_trade_no"`
	// TransactionID is WeChat's number of the payment: "4200" and 24
	// digits, unique within the simulator.
	TransactionID string `json:"transaction_id"`
	// TotalFee is the amount notified (PayOptions.TotalFee when set).
	TotalFee int64 `json:"total_fee"`
}

// Attempt is one delivery attempt of a notification.
type Attempt struct {
	// At is when the attempt started.
	At time.Time `json:"at"`
	// StatusCode is the merchant's HTTP status, 0 when the request failed.
	StatusCode int `json:"status_code"`
	// Body is what the merchant answered, truncated to 1 KiB.
	Body string `json:"body"`
	// Err says why the attempt did not acknowledge the notification: the
	// request failed, or the answer was not WeChat's SUCCESS.
	Err string `json:"err,omitempty"`
	// Acked is true when the answer acknowledged the notification: HTTP 200
	// and an XML body with return_code SUCCESS (API v2), HTTP 200 or 204
	// with any body (APIv3).
	Acked bool `json:"acked"`
	// Serial is the Wechatpay-Serial of an APIv3 attempt: the public key id
	// or platform certificate serial that named the signing key.
	Serial string `json:"serial,omitempty"`
}

// NotificationRecord is a notification and its delivery attempts.
type NotificationRecord struct {
	// Kind is KindPayment or KindRefund.
	Kind string
	// MchID is the order's merchant.
	MchID string
	// OutTradeNo is the merchant's order number.
	OutTradeNo string
	// TransactionID is the payment's transaction_id.
	TransactionID string
	// OutRefundNo is the merchant's refund number of a refund notification.
	OutRefundNo string
	// URL is the notify_url the notification is sent to.
	URL string
	// APIVersion is the notification's format: APIVersion2 (XML) or
	// APIVersion3 (JSON, signed in HTTP headers at each attempt).
	APIVersion int
	// Body is the exact body sent (XML or JSON), the same for every
	// attempt.
	Body []byte
	// Attempts are the attempts so far, in order.
	Attempts []Attempt
	// Acknowledged is true once an attempt was acknowledged.
	Acknowledged bool
	// GaveUp is true when the retry schedule ran out unacknowledged.
	GaveUp bool
}

// MarshalJSON encodes the record with snake_case names and the body as a
// string.
func (r NotificationRecord) MarshalJSON() ([]byte, error) {
	attempts := r.Attempts
	if attempts == nil {
		attempts = []Attempt{}
	}
	return json.Marshal(struct {
		Kind          string    `json:"kind"`
		MchID         string    `json:"mch_id"`
		OutTradeNo    string    `json:"out_trade_no"`
		TransactionID string    `json:"transaction_id"`
		OutRefundNo   string    `json:"out_refund_no,omitempty"`
		URL           string    `json:"url"`
		APIVersion    int       `json:"api_version"`
		Body          string    `json:"body"`
		Attempts      []Attempt `json:"attempts"`
		Acknowledged  bool      `json:"acknowledged"`
		GaveUp        bool      `json:"gave_up"`
	}{r.Kind, r.MchID, r.OutTradeNo, r.TransactionID, r.OutRefundNo, r.URL, r.APIVersion, string(r.Body), attempts, r.Acknowledged, r.GaveUp})
}

// notification is the simulator's record of one delivery; rec is guarded
// by Simulator.mu except rec.Kind, rec.MchID, rec.OutTradeNo,
// rec.TransactionID, rec.OutRefundNo, rec.APIVersion, rec.Body and
// rec.URL, which never change, and v3, which never changes either.
type notification struct {
	rec NotificationRecord
	v3  *v3Delivery // how an APIv3 notification is signed; nil for API v2
}

// String names the notification in logs; it reads only fields that never
// change.
func (n *notification) String() string {
	if n.rec.Kind == KindRefund {
		return fmt.Sprintf("refund notification of refund %s of order %s of mch_id %s", n.rec.OutRefundNo, n.rec.OutTradeNo, n.rec.MchID)
	}
	return fmt.Sprintf("notification of order %s of mch_id %s", n.rec.OutTradeNo, n.rec.MchID)
}

// Pay marks an order paid (or failed, with opts.Fail) and starts notifying
// the order's notify_url in the background on WeChat's retry schedule
// (unless opts.Lost). An order placed with APIv3 is notified in APIv3's
// format (TRANSACTION.SUCCESS, signed, its resource encrypted); APIv3
// notifies successes only, so a failed payment of such an order (opts.Fail)
// sends nothing. It fails with ErrUnknownOrder, ErrOrderPaid, ErrOrderClosed, ErrOrderExpired
// (the prepay_id is older than 2 hours or time_expire has passed),
// ErrInvalidPayOptions or ErrClosed, wrapped. ctx bounds the call only, not
// the notifications.
func (s *Simulator) Pay(ctx context.Context, opts PayOptions) (*Payment, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("wxpaysim: pay: %w", err)
	}
	if _, ok := opts.Extra.Lookup("sign"); ok {
		return nil, fmt.Errorf("%w: extra fields cannot set sign", ErrInvalidPayOptions)
	}
	if opts.TotalFee < 0 {
		return nil, fmt.Errorf("%w: total_fee %d is negative", ErrInvalidPayOptions, opts.TotalFee)
	}
	if opts.Lost && opts.Duplicate {
		return nil, fmt.Errorf("%w: a lost notification cannot be duplicated", ErrInvalidPayOptions)
	}
	forger, err := s.checkV3Fault(opts)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("wxpaysim: pay: %w", ErrClosed)
	}
	o, err := s.findOrderLocked(opts)
	if err != nil {
		return nil, fmt.Errorf("wxpaysim: pay: %w", err)
	}
	what := fmt.Sprintf("order %s of mch_id %s", o.OutTradeNo, o.MchID)
	switch o.State {
	case StateSuccess:
		return nil, fmt.Errorf("wxpaysim: pay %s: %w", what, ErrOrderPaid)
	case StateClosed:
		return nil, fmt.Errorf("wxpaysim: pay %s: %w", what, ErrOrderClosed)
	}
	now := s.now()
	if now.Sub(o.CreatedAt) >= PrepayIDLifetime {
		return nil, fmt.Errorf("wxpaysim: pay %s: prepay_id %s is older than %v: %w", what, o.PrepayID, PrepayIDLifetime, ErrOrderExpired)
	}
	if !o.expireAt.IsZero() && !now.Before(o.expireAt) {
		return nil, fmt.Errorf("wxpaysim: pay %s: time_expire %s has passed: %w", what, o.Params.Get("time_expire"), ErrOrderExpired)
	}
	m, ok := s.merchants[o.MchID]
	if !ok { // merchants are never removed; this is a bug if it happens
		return nil, fmt.Errorf("wxpaysim: pay %s: merchant unknown", what)
	}
	v3 := o.APIVersion == APIVersion3
	if opts.V3Fault != "" && !v3 {
		return nil, fmt.Errorf("%w: %s was placed with API v2: no v3 fault applies", ErrInvalidPayOptions, what)
	}
	copies := 1
	switch {
	case opts.Duplicate:
		copies = 2
	case opts.Lost:
		copies = 0
	}
	if v3 && opts.Fail {
		copies = 0 // APIv3 notifies successful payments only
	}
	if s.pendingFullLocked(copies) {
		return nil, fmt.Errorf("wxpaysim: pay %s: %d notifications on their retry schedule: %w", what, s.pending, ErrLimit)
	}

	txID := s.newTransactionIDLocked()
	fee := o.TotalFee
	if opts.TotalFee > 0 {
		fee = opts.TotalFee
	}
	var body []byte
	var delivery *v3Delivery
	if v3 {
		body, delivery, err = s.v3PaymentNotificationLocked(o, txID, fee, opts, now, forger)
	} else {
		body, err = notificationBody(o, m, txID, fee, opts, now)
	}
	if err != nil {
		return nil, fmt.Errorf("wxpaysim: pay %s: %w", what, err)
	}

	s.byTxID[txID] = o
	o.TransactionID = txID
	o.paidAt = now
	o.notifyBody = body
	result := "SUCCESS"
	if opts.Fail {
		o.State = StatePayError
		result = "FAIL"
	} else {
		o.State = StateSuccess
	}
	for range copies {
		s.notifyLocked(o, delivery.bodySent(body), delivery)
	}
	if opts.Lost {
		s.logf("wxpaysim: pay %s: %s transaction_id=%s total_fee=%d, notification lost", what, result, txID, fee)
	} else {
		s.logf("wxpaysim: pay %s: %s transaction_id=%s total_fee=%d, notifying %s (%d copies)", what, result, txID, fee, o.NotifyURL, copies)
	}
	return &Payment{MchID: o.MchID, AppID: o.AppID, OutTradeNo: o.OutTradeNo, TransactionID: txID, TotalFee: fee}, nil
}

// notifyLocked starts delivering a pay notification of o: body, signed as
// d says when o was placed with APIv3 (d nil: v2, or v3 without fault).
func (s *Simulator) notifyLocked(o *order, body []byte, d *v3Delivery) {
	n := &notification{rec: NotificationRecord{
		Kind: KindPayment, MchID: o.MchID, OutTradeNo: o.OutTradeNo, TransactionID: o.TransactionID, URL: o.NotifyURL,
		APIVersion: APIVersion2, Body: body,
	}}
	if o.APIVersion == APIVersion3 {
		if d == nil {
			d = &v3Delivery{}
		}
		n.rec.APIVersion, n.v3 = APIVersion3, d
	}
	s.keepNotificationLocked(n)
	s.pending++
	s.wg.Add(1)
	go s.deliver(n)
}

// keepNotificationLocked lists n among the notifications, dropping the
// oldest record past the limit (its delivery goes on).
func (s *Simulator) keepNotificationLocked(n *notification) {
	s.notifications = append(s.notifications, n)
	if over := len(s.notifications) - s.limits.Notifications; over > 0 {
		clear(s.notifications[:over])
		s.notifications = append(s.notifications[:0], s.notifications[over:]...)
	}
}

// pendingFullLocked reports whether another notification (copies of it)
// would exceed the limit of notifications on their retry schedule.
func (s *Simulator) pendingFullLocked(copies int) bool {
	return s.pending+copies > s.limits.Pending
}

// SendNotification sends the notification of an order's last payment
// again, in the background on WeChat's retry schedule, as a new record of
// Notifications: the notification of a payment made with PayOptions.Lost
// arriving late, or a notification WeChat sends once more. The body is the
// one built when the order was paid (for an APIv3 order, signed afresh at
// each attempt and without the payment's V3Fault). It fails with ErrUnknownOrder,
// ErrNotPaid (the order has no payment), ErrClosed or ctx's error, wrapped.
func (s *Simulator) SendNotification(ctx context.Context, mchID, outTradeNo string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wxpaysim: send notification: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("wxpaysim: send notification: %w", ErrClosed)
	}
	o, ok := s.orders[orderKey{mchID, outTradeNo}]
	if !ok {
		return fmt.Errorf("wxpaysim: send notification: out_trade_no %s of mch_id %s: %w", outTradeNo, mchID, ErrUnknownOrder)
	}
	if o.notifyBody == nil {
		return fmt.Errorf("wxpaysim: send notification of order %s of mch_id %s: %w", outTradeNo, mchID, ErrNotPaid)
	}
	if s.pendingFullLocked(1) {
		return fmt.Errorf("wxpaysim: send notification of order %s of mch_id %s: %w", outTradeNo, mchID, ErrLimit)
	}
	s.notifyLocked(o, o.notifyBody, nil)
	s.logf("wxpaysim: order %s of mch_id %s: notifying %s again", outTradeNo, mchID, o.NotifyURL)
	return nil
}

// findOrderLocked finds the order that opts names.
func (s *Simulator) findOrderLocked(opts PayOptions) (*order, error) {
	switch {
	case opts.PrepayID != "":
		o, ok := s.byPrepay[opts.PrepayID]
		if !ok {
			return nil, fmt.Errorf("prepay_id %s: %w", opts.PrepayID, ErrUnknownOrder)
		}
		if opts.OutTradeNo != "" && opts.OutTradeNo != o.OutTradeNo || opts.MchID != "" && opts.MchID != o.MchID {
			return nil, fmt.Errorf("%w: prepay_id %s belongs to order %s of mch_id %s", ErrInvalidPayOptions, opts.PrepayID, o.OutTradeNo, o.MchID)
		}
		return o, nil
	case opts.OutTradeNo != "" && opts.MchID != "":
		o, ok := s.orders[orderKey{opts.MchID, opts.OutTradeNo}]
		if !ok {
			return nil, fmt.Errorf("out_trade_no %s of mch_id %s: %w", opts.OutTradeNo, opts.MchID, ErrUnknownOrder)
		}
		return o, nil
	case opts.OutTradeNo != "":
		var found *order
		for _, o := range s.orderList {
			if o.OutTradeNo != opts.OutTradeNo {
				continue
			}
			if found != nil {
				return nil, fmt.Errorf("%w: out_trade_no %s is used by mch_id %s and %s: name the mch_id", ErrInvalidPayOptions, opts.OutTradeNo, found.MchID, o.MchID)
			}
			found = o
		}
		if found == nil {
			return nil, fmt.Errorf("out_trade_no %s: %w", opts.OutTradeNo, ErrUnknownOrder)
		}
		return found, nil
	}
	return nil, fmt.Errorf("%w: name the order by prepay_id or out_trade_no", ErrInvalidPayOptions)
}

// newTransactionIDLocked returns an unused transaction_id: "4200" and 24
// random digits.
func (s *Simulator) newTransactionIDLocked() string {
	for {
		id := "4200" + randomString(digits, 24)
		if _, dup := s.byTxID[id]; !dup {
			return id
		}
	}
}

// notificationBody builds and signs the pay notification of an order.
func notificationBody(o *order, m Merchant, txID string, fee int64, opts PayOptions, now time.Time) ([]byte, error) {
	feeStr := strconv.FormatInt(fee, 10)
	p := make(wxpay.Params, 0, 24+len(opts.Extra))
	p.Set("return_code", "SUCCESS")
	p.Set("appid", o.AppID)
	p.Set("mch_id", o.MchID)
	p.SetNonEmpty("device_info", o.Params.Get("device_info"))
	p.Set("nonce_str", randomString(alnum, 32))
	if opts.Fail {
		p.Set("result_code", "FAIL")
		p.Set("err_code", "NOTENOUGH")
		p.Set("err_code_des", errCodeDes("NOTENOUGH"))
	} else {
		p.Set("result_code", "SUCCESS")
	}
	p.Set("openid", o.openID())
	p.Set("is_subscribe", "N")
	p.Set("trade_type", o.TradeType)
	p.Set("bank_type", bankType)
	p.Set("total_fee", feeStr)
	p.Set("fee_type", o.feeType())
	p.Set("cash_fee", feeStr)
	p.Set("transaction_id", txID)
	p.Set("out_trade_no", o.OutTradeNo)
	p.SetNonEmpty("attach", o.Params.Get("attach"))
	p.Set("time_end", now.In(wxpay.Beijing).Format(wxpay.TimeLayout))
	// An order placed with HMAC-SHA256 is notified signed HMAC-SHA256,
	// without sign_type, as WeChat sends it (WxJava #1585 quotes such a
	// body): the receiver tells the algorithm from the sign itself.
	for _, f := range opts.Extra {
		p.Set(f.Name, f.Value)
	}
	sign, err := wxpay.Sign(p, m.Key, o.SignType)
	if err != nil {
		return nil, fmt.Errorf("signing the notification: %w", err)
	}
	p.Set("sign", sign)
	// WeChat sends the fields in name order, sign included.
	slices.SortStableFunc(p, func(a, b wxpay.Param) int { return strings.Compare(a.Name, b.Name) })
	body, err := wxpay.EncodeXML(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPayOptions, err)
	}
	return body, nil
}

// deliver sends a notification until it is acknowledged, the schedule runs
// out or the simulator closes.
func (s *Simulator) deliver(n *notification) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
	}()
	schedule := RetrySchedule()
	for i := 0; ; i++ {
		if s.attempt(n) || s.ctx.Err() != nil {
			return
		}
		if i == len(schedule) {
			s.mu.Lock()
			n.rec.GaveUp = true
			s.mu.Unlock()
			s.logf("wxpaysim: %s: no acknowledgement after %d attempts, giving up", n, i+1)
			return
		}
		t := time.NewTimer(s.scale(schedule[i]))
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
	}
}

// attempt posts the notification once, records the attempt, and reports
// whether it was acknowledged.
func (s *Simulator) attempt(n *notification) bool {
	a := Attempt{At: s.now()}
	if n.v3 != nil {
		a.Acked, a.StatusCode, a.Body, a.Err, a.Serial = s.postV3(n)
	} else {
		a.Acked, a.StatusCode, a.Body, a.Err = s.post(n.rec.URL, n.rec.Body)
	}
	s.mu.Lock()
	n.rec.Attempts = append(n.rec.Attempts, a)
	if a.Acked {
		n.rec.Acknowledged = true
	}
	count := len(n.rec.Attempts)
	s.mu.Unlock()
	if a.Acked {
		s.logf("wxpaysim: %s acknowledged (attempt %d)", n, count)
	} else {
		s.logf("wxpaysim: %s not acknowledged (attempt %d): %s", n, count, a.Err)
	}
	return a.Acked
}

// post sends one notification and judges the answer.
func (s *Simulator) post(target string, body []byte) (acked bool, status int, answer, problem string) {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return false, 0, "", fmt.Sprintf("building the request: %v", err)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := s.client.Do(req)
	if err != nil {
		return false, 0, "", err.Error()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerRead))
	answer = truncate(data, maxAttemptBody)
	switch {
	case err != nil:
		return false, resp.StatusCode, answer, fmt.Sprintf("reading the answer: %v", err)
	case resp.StatusCode != http.StatusOK:
		return false, resp.StatusCode, answer, fmt.Sprintf("HTTP status %d", resp.StatusCode)
	}
	if !bytes.Equal(data, successReply) {
		// WeChat takes only its exact reply (extra whitespace, another
		// field or return_msg included: it sends the notification again).
		if p, err := wxpay.DecodeXML(data); err == nil && p.Get("return_code") == "SUCCESS" {
			return false, resp.StatusCode, answer, "answer says SUCCESS but is not WeChat's exact reply " + wxpay.NotifyReplySuccess
		}
		return false, resp.StatusCode, answer, "answer is not WeChat's exact SUCCESS reply"
	}
	return true, resp.StatusCode, answer, ""
}

// successReply is the one answer to a notification WeChat takes as
// received.
var successReply = []byte(wxpay.NotifyReplySuccess)

// truncate returns at most limit bytes of b as a string, cut on a UTF-8
// character boundary.
func truncate(b []byte, limit int) string {
	if len(b) <= limit {
		return string(b)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut])
}

// Notifications returns a snapshot of every notification sent, in the
// order they were started (a Duplicate counts as two records).
func (s *Simulator) Notifications() []NotificationRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NotificationRecord, len(s.notifications))
	for i, n := range s.notifications {
		r := n.rec
		r.Body = slices.Clone(r.Body)
		r.Attempts = slices.Clone(r.Attempts)
		out[i] = r
	}
	return out
}
