package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// A WeChat failure, whatever the API version, reaches the caller with one
// status per kind, and WeChat's own code and words where it gave them.
func TestErrorFor(t *testing.T) {
	cause := errors.New("the cause")
	tests := []struct {
		name          string
		err           error
		status        int
		code, message string
	}{
		{"conflict", &CallError{Kind: Conflict, Code: "ORDERPAID", Message: "该订单已支付", Err: cause}, 409, "ORDERPAID", "该订单已支付"},
		{"not found", &CallError{Kind: NotFound, Code: "ORDERNOTEXIST", Message: "订单不存在"}, 404, "ORDERNOTEXIST", "订单不存在"},
		{"rate limited", &CallError{Kind: RateLimited, Code: "FREQUENCY_LIMITED", Message: "频率限制"}, 429, "FREQUENCY_LIMITED", "频率限制"},
		{"refused", &CallError{Kind: Refused, Code: "SYSTEMERROR", Message: "系统错误"}, 502, "SYSTEMERROR", "系统错误"},
		{"timeout", &CallError{Kind: Timeout, Err: cause}, 504, "WECHAT_TIMEOUT", "WeChat Pay did not answer in time"},
		{"unreachable", &CallError{Kind: Unreachable, Err: cause}, 502, "WECHAT_UNREACHABLE", "WeChat Pay could not be reached"},
		{"bad signature", &CallError{Kind: BadSignature, Err: cause}, 502, "WECHAT_BAD_SIGNATURE", "WeChat Pay's answer failed signature verification"},
		{"bad reply", &CallError{Kind: BadReply, Err: cause}, 502, "WECHAT_BAD_REPLY", "WeChat Pay's answer could not be used"},
		{"wrapped", fmt.Errorf("query o1: %w", &CallError{Kind: NotFound, Code: "REFUNDNOTEXIST", Message: "退款不存在"}), 404, "REFUNDNOTEXIST", "退款不存在"},
		{"a refused request", InvalidField("out_trade_no", "is too long"), 400, "INVALID_REQUEST", "out_trade_no is too long"},
		{"anything else", cause, 500, "INTERNAL", "the request could not be served"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ErrorFor(tt.err)
			if e.Status != tt.status || e.Code != tt.code || e.Message != tt.message {
				t.Fatalf("ErrorFor = %d %s %q, want %d %s %q", e.Status, e.Code, e.Message, tt.status, tt.code, tt.message)
			}
			if !errors.Is(e, tt.err) && !errors.Is(tt.err, e) {
				t.Fatalf("the answer lost its cause: %v", e)
			}
		})
	}
}

// The cross-check of a payment against its order: amount, app id and
// merchant; a failed payment may carry no amount.
func TestPaymentDiscrepancies(t *testing.T) {
	order := &ledger.Order{MchID: "10000100", AppID: "wx1", TotalFee: 100}
	paid := func(change func(p *Payment)) *Payment {
		p := &Payment{MchID: "10000100", AppID: "wx1", Succeeded: true, TotalFee: 100, HasTotalFee: true}
		if change != nil {
			change(p)
		}
		return p
	}
	tests := []struct {
		name string
		p    *Payment
		want map[string]event.Discrepancy
	}{
		{"agrees", paid(nil), nil},
		{"other amount", paid(func(p *Payment) { p.TotalFee = 1 }), map[string]event.Discrepancy{"total_fee": {Order: int64(100), Notification: int64(1)}}},
		{"other app id", paid(func(p *Payment) { p.AppID = "wx2" }), map[string]event.Discrepancy{"appid": {Order: "wx1", Notification: "wx2"}}},
		{"other merchant", paid(func(p *Payment) { p.MchID = "10000200" }), map[string]event.Discrepancy{"mch_id": {Order: "10000100", Notification: "10000200"}}},
		{"everything", paid(func(p *Payment) { p.TotalFee, p.AppID, p.MchID = 99, "wx9", "1" }), map[string]event.Discrepancy{
			"total_fee": {Order: int64(100), Notification: int64(99)},
			"appid":     {Order: "wx1", Notification: "wx9"},
			"mch_id":    {Order: "10000100", Notification: "1"},
		}},
		{"failed payment without an amount", paid(func(p *Payment) { p.Succeeded, p.HasTotalFee, p.TotalFee = false, false, 0 }), nil},
		{"failed payment with another amount", paid(func(p *Payment) { p.Succeeded, p.TotalFee = false, 5 }), map[string]event.Discrepancy{"total_fee": {Order: int64(100), Notification: int64(5)}}},
		{"success without an amount", paid(func(p *Payment) { p.HasTotalFee, p.TotalFee = false, 0 }), map[string]event.Discrepancy{"total_fee": {Order: int64(100), Notification: ""}}},
	}
	// The ledger makes the same call inside the event's transaction
	// (paymentChange's expectations): a payment is recorded as it is
	// exactly when PaymentDiscrepancies finds nothing.
	st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{Path: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PaymentDiscrepancies(order, tt.p); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("PaymentDiscrepancies = %v, want %v", got, tt.want)
			}
			if tt.p.MchID != order.MchID {
				return // another merchant's order is another key: the ledger does not hold it
			}
			ctx := context.Background()
			no := fmt.Sprintf("o%d", i)
			o := *order
			o.OutTradeNo = no
			if err := st.PutOrder(ctx, &o); err != nil {
				t.Fatal(err)
			}
			_, err := st.RecordEvent(ctx, &ledger.Event{ID: "evt_" + no, MchID: order.MchID, OutTradeNo: no, Type: "t"}, paymentChange(tt.p))
			var me *ledger.MismatchError
			if mismatch := errors.As(err, &me); mismatch != (tt.want != nil) || (err != nil && !mismatch) {
				t.Fatalf("the ledger's verdict: %v; PaymentDiscrepancies: %v", err, tt.want)
			}
		})
	}
}

func TestRefundDiscrepancies(t *testing.T) {
	r := &ledger.Refund{MchID: "m", OutRefundNo: "r1", RefundFee: 30}
	if d := RefundDiscrepancies(r, &RefundNotice{RefundFee: 30}); d != nil {
		t.Fatalf("the same amount: %v", d)
	}
	want := map[string]event.Discrepancy{"refund_fee": {Order: int64(30), Notification: int64(31)}}
	if d := RefundDiscrepancies(r, &RefundNotice{RefundFee: 31}); !reflect.DeepEqual(d, want) {
		t.Fatalf("another amount: %v, want %v", d, want)
	}
}

// The content hash is stored in ledgers: it is pinned to vectors computed
// outside this code, with Python (fields under API v2's names, sorted, each
// name and value followed by a NUL, UTF-8, SHA-256):
//
//	python3 -c 'import hashlib
//	f={"appid":"wxd930ea5d5a258f4f","body":"test","out_trade_no":"o1","total_fee":"100","trade_type":"JSAPI",
//	   "openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o","notify_url":"https://pay.example.com/wxpay/notify","attach":"中文"}
//	h=hashlib.sha256()
//	for k in sorted(f): h.update((k+"\0"+f[k]+"\0").encode())
//	print(h.hexdigest())'
//
// and the same for the second order's fields.
func TestContentHash(t *testing.T) {
	jsapi := &Order{NotifyURL: "https://pay.example.com/wxpay/notify", OrderRequest: OrderRequest{
		AppID: "wxd930ea5d5a258f4f", Body: "test", OutTradeNo: "o1", TotalFee: 100, TradeType: "JSAPI",
		OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", Attach: "中文", SpbillCreateIP: "1.2.3.4",
	}}
	native := &Order{NotifyURL: "https://pay.example.com/wxpay/notify", OrderRequest: OrderRequest{
		AppID: "wx2421b1c4370ec43b", Body: "book", OutTradeNo: "n1", TotalFee: 1, TradeType: "NATIVE", ProductID: "p1",
		TimeExpire: "20261202120000", Detail: "d", GoodsTag: "g", SceneInfo: "{}",
	}}
	for _, tt := range []struct {
		o    *Order
		want string
	}{
		{jsapi, "4d88de7626494b66a259143b0fef40d44ce69821ae54dbff02c9831b30481e8d"},
		{native, "a529f4e779b9a402a79a8f829e9cdea8a65675e9e5df9d0bf3573483f10665e1"},
	} {
		if got := contentHash(tt.o); got != tt.want {
			t.Errorf("contentHash(%s) = %s, want %s", tt.o.OutTradeNo, got, tt.want)
		}
	}
	// The client's IP is not content; every other field is.
	o := *jsapi
	o.SpbillCreateIP = "5.6.7.8"
	if contentHash(&o) != contentHash(jsapi) {
		t.Error("the client's IP changed the hash")
	}
	for _, change := range []func(o *Order){
		func(o *Order) { o.TotalFee++ }, func(o *Order) { o.AppID = "wx2" }, func(o *Order) { o.Body += "!" },
		func(o *Order) { o.NotifyURL += "2" }, func(o *Order) { o.TradeType = "APP" }, func(o *Order) { o.TimeExpire = "20260101000000" },
		func(o *Order) { o.Detail = "x" }, func(o *Order) { o.GoodsTag = "x" }, func(o *Order) { o.SceneInfo = "x" },
		func(o *Order) { o.ProductID = "x" }, func(o *Order) { o.OpenID = "x" }, func(o *Order) { o.Attach = "" },
	} {
		o := *jsapi
		change(&o)
		if contentHash(&o) == contentHash(jsapi) {
			t.Errorf("a change of content kept the hash: %+v", o)
		}
	}
}

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC) // 10:00 in Beijing
	tests := []struct {
		timeExpire string
		want       time.Time
	}{
		{"", now.Add(2 * time.Hour)},
		{"20261202110000", now.Add(time.Hour)},          // earlier than the prepay_id's 2 hours
		{"20261202150000", now.Add(2 * time.Hour)},      // later: the prepay_id expires first
		{"2026-12-02 11:00:00", now.Add(2 * time.Hour)}, // not WeChat's layout: ignored (validation refuses it before)
	}
	for _, tt := range tests {
		o := &Order{OrderRequest: OrderRequest{TimeExpire: tt.timeExpire}}
		if got := expiry(o, now); !got.Equal(tt.want) {
			t.Errorf("expiry(%q) = %s, want %s", tt.timeExpire, got, tt.want)
		}
	}
}

// The reconciler's schedule: the delay doubles with each check (up to an
// hour), never past the order's expiry, and never into the past.
func TestNextCheck(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	far := now.Add(24 * time.Hour)
	tests := []struct {
		checks  int
		expires time.Time
		want    time.Duration
	}{
		{0, far, 5 * time.Minute},
		{1, far, 10 * time.Minute},
		{3, far, 40 * time.Minute},
		{4, far, 80 * time.Minute},
		{10, far, 80 * time.Minute}, // stops doubling past an hour
		{2, now.Add(7 * time.Minute), 7 * time.Minute},
		{0, now, 5 * time.Minute}, // expired: the next check is one delay on
	}
	for _, tt := range tests {
		o := &ledger.Order{Checks: tt.checks, ExpiresAt: tt.expires}
		if got := nextCheck(5*time.Minute, o, now); !got.Equal(now.Add(tt.want)) {
			t.Errorf("checks %d, expiry in %s: next in %s, want %s", tt.checks, tt.expires.Sub(now), got.Sub(now), tt.want)
		}
	}
}

// Order and refund documents are decoded strictly, each refusal naming the
// field.
func TestDecodeRequests(t *testing.T) {
	tests := []struct {
		name, doc, says string
	}{
		{"fractional fee", `{"out_trade_no":"o","total_fee":1.5}`, "total_fee must be an integer"},
		{"string fee", `{"total_fee":"1"}`, "total_fee must be a JSON number"},
		{"zero fee", `{"total_fee":0}`, "total_fee must be above zero"},
		{"missing fee", `{"out_trade_no":"o"}`, "total_fee is required"},
		{"null fee", `{"total_fee":null}`, "total_fee is required"},
		{"numeric body", `{"total_fee":1,"body":5}`, "body must be a JSON string"},
		{"unknown field", `{"total_fee":1,"total_fees":1}`, "total_fees"},
		{"trailing data", `{"total_fee":1} {}`, "data after the JSON object"},
		{"not JSON", `out_trade_no=1`, "not a valid JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeOrderRequest([]byte(tt.doc))
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, tt.says) {
				t.Fatalf("DecodeOrderRequest: %v, want a 400 saying %q", err, tt.says)
			}
		})
	}
	o, err := DecodeOrderRequest([]byte(`{"out_trade_no":"o1","total_fee":2500,"body":"结账","trade_type":"JSAPI","openid":"x"}`))
	if err != nil || o.TotalFee != 2500 || o.Body != "结账" || o.OpenID != "x" {
		t.Fatalf("a valid order: %+v, %v", o, err)
	}
	r, err := DecodeRefundRequest([]byte(`{"out_trade_no":"o1","out_refund_no":"r1","total_fee":100,"refund_fee":30}`))
	if err != nil || r.TotalFee != 100 || r.RefundFee != 30 || r.OutRefundNo != "r1" {
		t.Fatalf("a valid refund: %+v, %v", r, err)
	}
	if _, err := DecodeRefundRequest([]byte(`{"out_refund_no":"r1","total_fee":100}`)); err == nil || !strings.Contains(err.Error(), "refund_fee is required") {
		t.Fatalf("a refund without refund_fee: %v", err)
	}
}

// A refund notification against WeChat's refund query: each fact the
// query contradicts is listed with both values.
func TestRefundQueryDiscrepancies(t *testing.T) {
	q := &RefundQueryResponse{OutTradeNo: "o1", TransactionID: "4200001", TotalFee: 100, Refunds: []RefundEntry{
		{OutRefundNo: "r0", RefundID: "5000", RefundFee: 10, RefundStatus: "SUCCESS", SuccessTime: "2026-12-01 10:00:00"},
		{OutRefundNo: "r1", RefundID: "5001", RefundFee: 30, RefundStatus: "SUCCESS", SuccessTime: "2026-12-01 10:05:00"},
	}}
	agree := RefundNotice{OutRefundNo: "r1", RefundID: "5001", OutTradeNo: "o1", TransactionID: "4200001", RefundFee: 30, Status: "SUCCESS",
		Data: map[string]any{"total_fee": int64(100), "success_time": "2026-12-01 10:05:00"}}
	tests := []struct {
		name   string
		change func(n *RefundNotice)
		want   map[string]event.Discrepancy
	}{
		{"agrees", nil, nil},
		{"another refund_id", func(n *RefundNotice) { n.RefundID = "5009" }, map[string]event.Discrepancy{"refund_id": {Queried: "5001", Notification: "5009"}}},
		{"another order", func(n *RefundNotice) { n.OutTradeNo = "o2" }, map[string]event.Discrepancy{"out_trade_no": {Queried: "o1", Notification: "o2"}}},
		{"another amount", func(n *RefundNotice) { n.RefundFee = 31 }, map[string]event.Discrepancy{"refund_fee": {Queried: int64(30), Notification: int64(31)}}},
		{"another status", func(n *RefundNotice) { n.Status = "REFUNDCLOSE" }, map[string]event.Discrepancy{"refund_status": {Queried: "SUCCESS", Notification: "REFUNDCLOSE"}}},
		{"a refund the query does not list", func(n *RefundNotice) { n.OutRefundNo = "r9" }, map[string]event.Discrepancy{"out_refund_no": {Queried: "", Notification: "r9"}}},
		{"another transaction", func(n *RefundNotice) { n.TransactionID = "4200009" }, map[string]event.Discrepancy{"transaction_id": {Queried: "4200001", Notification: "4200009"}}},
		{"another order amount", func(n *RefundNotice) {
			n.Data = map[string]any{"total_fee": int64(900), "success_time": "2026-12-01 10:05:00"}
		},
			map[string]event.Discrepancy{"total_fee": {Queried: int64(100), Notification: int64(900)}}},
		{"another success time", func(n *RefundNotice) {
			n.Data = map[string]any{"total_fee": int64(100), "success_time": "2026-12-01 10:00:00"}
		},
			map[string]event.Discrepancy{"success_time": {Queried: "2026-12-01 10:05:00", Notification: "2026-12-01 10:00:00"}}},
		{"facts the notification leaves out", func(n *RefundNotice) { n.TransactionID, n.Data = "", nil }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := agree
			if tt.change != nil {
				tt.change(&n)
			}
			if got := RefundQueryDiscrepancies(q, q.Entry(n.OutRefundNo), &n); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("RefundQueryDiscrepancies = %v, want %v", got, tt.want)
			}
		})
	}
}

// The notify URL rule, the same for notify_url, refund_notify_url and a
// refund's own notify_url.
func TestCheckNotifyURL(t *testing.T) {
	tests := []struct {
		url    string
		policy HTTPNotify
		says   string // "" when accepted
	}{
		{"https://pay.example.com/wxpay/notify", HTTPNotifyNever, ""},
		{"http://pay.example.com/wxpay/notify", HTTPNotifyNever, "must be https"},
		{"http://127.0.0.1:8080/wxpay/notify", HTTPNotifyLoopback, ""},
		{"http://LOCALHOST.:8080/wxpay/notify", HTTPNotifyLoopback, ""},
		{"http://pay.example.com/wxpay/notify", HTTPNotifyLoopback, "only on a loopback address"},
		{"http://pay.example.com/wxpay/notify", HTTPNotifyAny, ""},
		{"https://pay.example.com/notify?a=1", HTTPNotifyNever, "query string"},
		{"https://pay.example.com/notify?", HTTPNotifyNever, "query string"},
		{"/wxpay/notify", HTTPNotifyAny, "not an absolute URL"},
		{"ftp://pay.example.com/notify", HTTPNotifyAny, "must be https"},
		{"", HTTPNotifyAny, "is required"},
	}
	for _, tt := range tests {
		err := CheckNotifyURL("notify_url", tt.url, tt.policy)
		if (tt.says == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.says)) {
			t.Errorf("CheckNotifyURL(%q, %d) = %v, want %q", tt.url, tt.policy, err, tt.says)
		}
	}
	for host, want := range map[string]bool{"localhost": true, "LocalHost": true, "localhost.": true, "127.0.0.2": true, "::1": true,
		"localhost.example.com": false, "10.0.0.1": false, "": false} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%q) = %v", host, !want)
		}
	}
}

// A notification may carry 64 KiB of an attacker's text, which an error
// can quote: what reaches the log is bounded.
func TestRefusalLogIsBounded(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := New(Config{Logger: zap.New(core)})
	m := &Merchant{Name: "default", MchID: "10000100", AppIDs: []string{"wx1"}, API: refusingProtocol{}}
	huge := `<?xml version="1.0" encoding="` + strings.Repeat("Ａ", 20000) + `"?><xml></xml>`
	reply := s.AcceptPaymentNotification(context.Background(), m, Notification{Body: []byte(huge)})
	if reply.Status != http.StatusBadRequest {
		t.Fatalf("reply %d", reply.Status)
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries", len(entries))
	}
	logged, _ := entries[0].ContextMap()["error"].(string)
	if len(logged) > 600 || !strings.Contains(logged, "more bytes") || !utf8.ValidString(logged) {
		t.Fatalf("logged error of %d bytes: %.100q…", len(logged), logged)
	}
	if LogText("short") != "short" {
		t.Fatal("a short text was changed")
	}
}

// refusingProtocol refuses every notification with an error quoting it
// whole, as a decoder quoting a malformed declaration would.
type refusingProtocol struct{ Protocol }

func (refusingProtocol) ParsePaymentNotification(_ http.Header, body []byte) (*Payment, error) {
	return nil, fmt.Errorf("malformed: %q", body)
}

func (refusingProtocol) TakesNotification(http.Header, []byte) bool { return true }

func (refusingProtocol) NotifyReply(status int, reason string) Reply {
	return Reply{Status: status, Body: []byte(reason)}
}

// After a failed call, a record made before it is removed only when WeChat
// surely did nothing, and kept when the effect is unknown: each failure is
// exactly one of the two (or neither, for a failure that is no answer of
// WeChat's and no refusal of the gateway's).
func TestRefusedOrUnknown(t *testing.T) {
	tests := []struct {
		name             string
		err              error
		refused, unknown bool
	}{
		{"business error", &CallError{Kind: Refused, Code: "PARAM_ERROR"}, true, false},
		{"WeChat's system error", &CallError{Kind: Refused, Code: CodeSystemError}, false, true},
		{"conflict", &CallError{Kind: Conflict, Code: "OUT_TRADE_NO_USED"}, true, false},
		{"not found", &CallError{Kind: NotFound}, true, false},
		{"rate limit", &CallError{Kind: RateLimited}, true, false},
		{"timeout", &CallError{Kind: Timeout}, false, true},
		{"unreachable", &CallError{Kind: Unreachable}, false, true},
		{"answer not verified", &CallError{Kind: BadSignature}, false, true},
		{"answer unusable", fmt.Errorf("wrapped: %w", &CallError{Kind: BadReply}), false, true},
		{"refused by the gateway", BadRequest("total_fee must be positive"), true, false},
		{"anything else", errors.New("context canceled"), false, false},
	}
	for _, tt := range tests {
		if r, u := wechatRefused(tt.err), effectUnknown(tt.err); r != tt.refused || u != tt.unknown {
			t.Errorf("%s: refused %v unknown %v, want %v %v", tt.name, r, u, tt.refused, tt.unknown)
		}
	}
}

// countingObserver counts the notifications refused.
type countingObserver struct {
	nopObserver
	refused int
}

func (o *countingObserver) NotificationTaken(_, _, result, _ string) {
	if result == "refused" {
		o.refused++
	}
}

// Anyone can post to the notify routes: a flood of forgeries is logged in
// full RefusalLogFirst times a second, then one in RefusalLogThereafter,
// and counted whole by the metrics.
func TestRefusalLogIsSampled(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	obs := &countingObserver{}
	s := New(Config{Logger: zap.New(core), Observer: obs})
	m := &Merchant{Name: "default", MchID: "10000100", AppIDs: []string{"wx1"}, API: refusingProtocol{}}
	const n = 2000
	start := time.Now()
	for range n {
		s.AcceptPaymentNotification(context.Background(), m, Notification{Body: []byte("<xml>forged</xml>")})
	}
	seconds := int(time.Since(start)/time.Second) + 1 // the sampler's windows the flood spanned
	logged := logs.FilterMessage("notification refused; WeChat will retry").Len()
	if most := seconds * (RefusalLogFirst + n/RefusalLogThereafter); logged < RefusalLogFirst || logged > most {
		t.Fatalf("%d forgeries in %d s: %d log entries, want %d to %d", n, seconds, logged, RefusalLogFirst, most)
	}
	if obs.refused != n {
		t.Fatalf("the metrics counted %d refusals of %d", obs.refused, n)
	}
	// The gateway's own failures are logged every time, flood or not.
	s.RefuseNotification(m, Notification{}, http.StatusServiceUnavailable, "storage failure", errors.New("database is locked"))
	failures := 0
	for _, e := range logs.FilterMessage("notification refused; WeChat will retry").All() {
		if e.ContextMap()["reason"] == "storage failure" {
			failures++
		}
	}
	if failures != 1 {
		t.Fatalf("a storage failure during the flood logged %d times", failures)
	}
}

// WeChat's Request-ID, which its support asks for, is in the logged error
// even when the error's text leaves it out (an answer that failed
// verification).
func TestLogErrorKeepsRequestID(t *testing.T) {
	err := &CallError{Kind: BadSignature, RequestID: "08F0-RID-1", Err: errors.New("signature does not verify")}
	if f := LogError(err); !strings.Contains(f.String, "08F0-RID-1") {
		t.Errorf("logged error %q has no Request-ID", f.String)
	}
}

// WeChat refusing one request (PARAM_ERROR) is logged at warn; refusals
// that say the merchant's set-up is wrong (every call fails until it is
// fixed) stay at error, as do WeChat's and the gateway's failures.
func TestLogLevel(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want zapcore.Level
	}{
		{&CallError{Kind: Refused, Code: "PARAM_ERROR"}, zapcore.WarnLevel},
		{&CallError{Kind: Refused, Code: "INVALID_REQUEST"}, zapcore.WarnLevel},
		{&CallError{Kind: Refused, Code: "SIGN_ERROR"}, zapcore.ErrorLevel},
		{&CallError{Kind: Refused, Code: "NOAUTH"}, zapcore.ErrorLevel},
		{&CallError{Kind: Refused, Code: "APPID_MCHID_NOT_MATCH"}, zapcore.ErrorLevel},
		{&CallError{Kind: Refused, Code: CodeSystemError}, zapcore.ErrorLevel},
		{&CallError{Kind: Unreachable}, zapcore.ErrorLevel},
		{&CallError{Kind: Conflict, Code: "ORDERPAID"}, zapcore.InfoLevel},
		{context.Canceled, zapcore.InfoLevel},
		{BadRequest("no"), zapcore.InfoLevel},
	} {
		if got := LogLevel(ErrorFor(tt.err)); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.err, got, tt.want)
		}
	}
}
