package event

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

const secret = "whsec-test-0123456789abcdef"

// The vectors were computed with Python, outside this code:
//
//	python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec-test-0123456789abcdef",
//	  b"1795770000.{\"id\":\"evt_1\"}", hashlib.sha256).hexdigest())'
//	python3 -c 'import hashlib; print("evt_"+hashlib.sha256(
//	  b"payment\x0010000100\x004200000000000000000000000001\x00").hexdigest()[:32])'
func TestSignAndIDVectors(t *testing.T) {
	got := Sign([]byte(secret), 1795770000, []byte(`{"id":"evt_1"}`))
	if want := "v1=6ca09c5d5fd392c025b8bfddda6325506443fe50e2e7f1840ca93bb2a7c24f3e"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if got, want := PaymentID("10000100", "4200000000000000000000000001", "o1"), "evt_67694f6104715be9a2af235498e6c144"; got != want {
		t.Errorf("PaymentID = %s, want %s", got, want)
	}
	// The id depends on the transaction, not on the order number, and a
	// failed payment without transaction_id gets one from its order.
	if PaymentID("10000100", "tx1", "a") != PaymentID("10000100", "tx1", "b") || PaymentID("10000100", "tx1", "a") == PaymentID("10000100", "tx2", "a") {
		t.Error("PaymentID is not derived from mch_id and transaction_id")
	}
	if PaymentID("10000100", "", "o1") == PaymentID("10000100", "", "o2") || PaymentID("1", "tx", "") == PaymentID("2", "tx", "") {
		t.Error("PaymentID collides")
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	now := time.Unix(1795770000, 0)
	h := http.Header{}
	SetHeaders(h, []byte(secret), "evt_1", now, body)
	if h.Get(HeaderID) != "evt_1" || h.Get(HeaderTimestamp) != "1795770000" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	tests := []struct {
		name   string
		mutate func(h http.Header) []byte
		now    time.Time
		want   error
	}{
		{"valid", func(http.Header) []byte { return body }, now, nil},
		{"valid, rotated secrets listed", func(h http.Header) []byte {
			h.Set(HeaderSignature, "v1=00ff,"+h.Get(HeaderSignature))
			return body
		}, now, nil},
		{"tampered body", func(http.Header) []byte { return []byte(`{"id":"evt_2"}`) }, now, ErrBadSignature},
		{"other timestamp", func(h http.Header) []byte { h.Set(HeaderTimestamp, "1795770001"); return body }, now, ErrBadSignature},
		{"no signature", func(h http.Header) []byte { h.Del(HeaderSignature); return body }, now, ErrNoSignature},
		{"stale", func(http.Header) []byte { return body }, now.Add(10 * time.Minute), ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := h.Clone()
			b := tt.mutate(hh)
			err := Verify([]byte(secret), hh, b, 5*time.Minute, tt.now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	if err := Verify([]byte("other-secret-0123456"), h, body, 0, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another secret: %v", err)
	}
}

func TestFromNotification(t *testing.T) {
	n := &wxpay.Notification{Params: wxpay.Params{
		{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"}, {Name: "mch_id", Value: "10000100"},
		{Name: "appid", Value: "wx1"}, {Name: "out_trade_no", Value: "o1"}, {Name: "transaction_id", Value: "tx1"},
		{Name: "total_fee", Value: "100"}, {Name: "cash_fee", Value: "90"}, {Name: "coupon_fee_0", Value: "10"},
		{Name: "coupon_count", Value: "1"}, {Name: "attach", Value: "中文"}, {Name: "sign", Value: "ABC"},
	}}
	ev, err := FromNotification(n, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ev.Marshal()
	var got struct {
		ID, Type, Created string
		Data              map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != PaymentSucceeded || got.ID != PaymentID("10000100", "tx1", "o1") || got.Created != "1970-01-01T00:00:00Z" {
		t.Fatalf("event %+v", got)
	}
	if got.Data["total_fee"] != float64(100) || got.Data["coupon_fee_0"] != float64(10) || got.Data["coupon_count"] != "1" || got.Data["attach"] != "中文" {
		t.Fatalf("data %v", got.Data)
	}
	if _, ok := got.Data["sign"]; ok {
		t.Fatal("the event carries the sign")
	}
	n.Params.Set("result_code", "FAIL")
	if ev, _ := FromNotification(n, time.Now()); ev.Type != PaymentFailed {
		t.Fatalf("failed payment: %s", ev.Type)
	}
	n.Params.Set("total_fee", "1.5")
	if _, err := FromNotification(n, time.Now()); err == nil {
		t.Fatal("a non-integer amount was accepted")
	}
}

func TestFromRefundNotification(t *testing.T) {
	for status, typ := range map[string]string{"SUCCESS": RefundSucceeded, "CHANGE": RefundChanged, "REFUNDCLOSE": RefundClosed} {
		n := &wxpay.RefundNotification{
			Params: wxpay.Params{{Name: "mch_id", Value: "10000100"}, {Name: "appid", Value: "wx1"}},
			Info: wxpay.Params{{Name: "refund_id", Value: "r1"}, {Name: "refund_status", Value: status},
				{Name: "refund_fee", Value: "30"}, {Name: "total_fee", Value: "100"}},
		}
		ev, err := FromRefundNotification(n, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != typ || ev.ID != RefundID("10000100", "r1", status) || ev.Data["refund_fee"] != int64(30) || ev.Data["mch_id"] != "10000100" {
			t.Errorf("%s: %+v", status, ev)
		}
	}
	if RefundID("m", "r1", "SUCCESS") == RefundID("m", "r1", "CHANGE") {
		t.Error("a refund's states share an id")
	}
}
