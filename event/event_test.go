package event

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
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
	// No tolerance given is the default window, never none.
	if err := Verify([]byte(secret), h, body, 0, now.Add(DefaultTolerance+time.Second)); !errors.Is(err, ErrStale) {
		t.Fatalf("a stale delivery with tolerance 0: %v", err)
	}
	if err := Verify([]byte(secret), h, body, -1, now.Add(-DefaultTolerance+time.Second)); err != nil {
		t.Fatalf("a fresh delivery with a negative tolerance: %v", err)
	}
	// The id header is outside the signature: the body's id is the one to
	// trust.
	replayed := h.Clone()
	replayed.Set(HeaderID, "evt_forged")
	if err := Verify([]byte(secret), replayed, body, 0, now); err != nil {
		t.Fatalf("a replay with another id header: %v (it verifies: dedupe on the body's id)", err)
	}
}

func TestNewPayment(t *testing.T) {
	data := map[string]any{
		"return_code": "SUCCESS", "result_code": "SUCCESS", "mch_id": "10000100", "appid": "wx1",
		"out_trade_no": "o1", "transaction_id": "tx1", "total_fee": int64(100), "cash_fee": int64(90),
		"coupon_fee_0": int64(10), "coupon_count": "1", "attach": "中文",
	}
	ev := NewPayment("10000100", "tx1", "o1", true, data, time.Unix(0, 0))
	b, _ := ev.Marshal()
	var got struct {
		ID, Type, Created string
		OrderChecked      *bool `json:"order_checked"`
		Data              map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != PaymentSucceeded || got.ID != PaymentID("10000100", "tx1", "o1") || got.Created != "1970-01-01T00:00:00Z" ||
		got.OrderChecked == nil || *got.OrderChecked {
		t.Fatalf("event %+v: want order_checked false until set", got)
	}
	if got.Data["total_fee"] != float64(100) || got.Data["coupon_fee_0"] != float64(10) || got.Data["coupon_count"] != "1" || got.Data["attach"] != "中文" {
		t.Fatalf("data %v", got.Data)
	}
	if ev := NewPayment("10000100", "", "o1", false, data, time.Now()); ev.Type != PaymentFailed || ev.ID != FailedPaymentID("10000100", "", "o1") {
		t.Fatalf("failed payment: %s %s", ev.Type, ev.ID)
	}
	// A failure that carries the transaction_id of a later success must
	// not take the success's id (the success would be dropped as its
	// duplicate).
	if failed, paid := NewPayment("m", "tx1", "o1", false, data, time.Now()), NewPayment("m", "tx1", "o1", true, data, time.Now()); failed.ID == paid.ID {
		t.Fatal("a failed payment and the success of its transaction share an id")
	}
	if FailedPaymentID("m", "", "o1") == PaymentID("m", "o1", "") || FailedPaymentID("m", "tx1", "") == FailedPaymentID("m", "", "tx1") {
		t.Fatal("failed payment ids collide")
	}
}

func TestMarkMismatch(t *testing.T) {
	data := map[string]any{"total_fee": int64(1)}
	ev := NewPayment("m", "tx", "o", true, data, time.Unix(0, 0))
	ev.SetOrderChecked(true)
	ev.MarkMismatch(PaymentMismatch, map[string]Discrepancy{"total_fee": {Order: int64(100), Notification: int64(1)}})
	b, _ := ev.Marshal()
	want := `{"id":"` + PaymentID("m", "tx", "o") + `","type":"payment.mismatch","created":"1970-01-01T00:00:00Z","order_checked":true,"data":{"mismatch":{"total_fee":{"order":100,"notification":1}},"total_fee":1}}`
	if string(b) != want {
		t.Fatalf("mismatch event\n%s\nwant\n%s", b, want)
	}
	if _, ok := data["mismatch"]; ok {
		t.Fatal("MarkMismatch changed the map the event was built from")
	}
}

func TestNewRefund(t *testing.T) {
	for status, typ := range map[string]string{"SUCCESS": RefundSucceeded, "CHANGE": RefundChanged, "REFUNDCLOSE": RefundClosed} {
		data := map[string]any{"mch_id": "10000100", "appid": "wx1", "refund_id": "r1", "refund_status": status,
			"refund_fee": int64(30), "total_fee": int64(100)}
		ev, err := NewRefund("10000100", "r1", status, data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != typ || ev.ID != RefundID("10000100", "r1", status) || ev.Data["refund_fee"] != int64(30) || ev.Data["mch_id"] != "10000100" || ev.OrderChecked != nil {
			t.Errorf("%s: %+v", status, ev)
		}
	}
	if _, err := NewRefund("m", "r1", "PROCESSING", nil, time.Now()); err == nil {
		t.Error("a refund event for PROCESSING, which WeChat never notifies")
	}
	if RefundID("m", "r1", "SUCCESS") == RefundID("m", "r1", "CHANGE") {
		t.Error("a refund's states share an id")
	}
}

// A mismatch's id is a function of the genuine event's id and of what the
// notification says: never the genuine id, the same for the same data
// (in any map order), another for other data or another genuine id.
func TestMismatchID(t *testing.T) {
	id := RefundID("10000100", "50000000382019052709732678859", "SUCCESS")
	data := map[string]any{"refund_fee": int64(700), "out_refund_no": "sq-a", "refund_status": "SUCCESS"}
	same := map[string]any{"refund_status": "SUCCESS", "out_refund_no": "sq-a", "refund_fee": int64(700)}
	other := map[string]any{"refund_fee": int64(200), "out_refund_no": "sq-a", "refund_status": "SUCCESS"}
	m1, err1 := MismatchID(id, data)
	m2, err2 := MismatchID(id, same)
	m3, err3 := MismatchID(id, other)
	m4, err4 := MismatchID(RefundID("10000100", "50000000382019052709732678859", "REFUNDCLOSE"), data)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}
	if m1 == id || m1 != m2 || m1 == m3 || m1 == m4 || !strings.HasPrefix(m1, "evt_") || len(m1) != len(id) {
		t.Fatalf("ids %s %s %s %s (genuine %s)", m1, m2, m3, m4, id)
	}
	if _, err := MismatchID(id, map[string]any{"x": math.NaN()}); err == nil {
		t.Fatal("NaN encoded")
	}
}
