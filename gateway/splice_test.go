package gateway_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// A refund notification's req_info is AES-256-ECB: each 16-byte block is
// encrypted alone, so whoever has seen two notifications of the merchant
// can swap blocks between their ciphertexts, and the result decrypts to a
// well-formed refund that WeChat never notified. Here the block holding
// one refund's amount goes into another refund's notification (both made
// by the simulator, as WeChat makes them): it decrypts, names the first
// refund with the second one's amount, and the gateway, which asks WeChat
// before believing it, forwards it as refund.mismatch and leaves the
// refund as it was. The gateway may hold no record of the refund (placed
// elsewhere): WeChat's refund query is then the only check.
//
// The same holds for the block of any figure the event carries that the
// query reports too: settlement_refund_fee (the refund less non-cash
// coupons), which the query confirms as well.
func TestSplicedRefundNotification(t *testing.T) {
	for _, field := range []string{"refund_fee", "settlement_refund_fee"} {
		for _, placedHere := range []bool{true, false} {
			name := map[bool]string{true: "refunds placed through the gateway", false: "refunds placed elsewhere"}[placedHere]
			t.Run(field+"/"+name, func(t *testing.T) { testSplicedRefundNotification(t, field, placedHere) })
		}
	}
}

func testSplicedRefundNotification(t *testing.T, field string, placedHere bool) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	placer := e.svc
	if !placedHere {
		placer = gateway.New(gateway.Config{Now: e.clock.Now}) // no ledger
	}
	a, bodyA, bodyB := refundsNotifiedElsewhere(t, e, placer, "sp1")
	stateBefore, err := e.store.GetRefund(ctx, mchID, "sp1-a")
	if placedHere != (err == nil) {
		t.Fatalf("the ledger's record of the refund: %+v, %v", stateBefore, err)
	}
	forged := spliceRefundField(t, bodyA, bodyB, field)
	n, err := wxpay.DecryptRefundNotification(forged, apiKey)
	if err != nil || n.Info.Get("out_refund_no") != "sp1-a" || n.Info.Get("refund_id") != a.RefundID || n.Info.Get(field) != "700" {
		t.Fatalf("the splice does not make the forgery it should: %v, %v", n, err)
	}

	if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: forged}); reply.Status != http.StatusOK {
		t.Fatalf("reply %d %s", reply.Status, reply.Body)
	}
	// Stored as refund.mismatch, under an id of its own (not the one the
	// genuine notification's event has).
	if _, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, a.RefundID, "SUCCESS")); err == nil {
		t.Fatal("the forged notification took the genuine event's id")
	}
	var ev *ledger.Event
	for _, x := range e.eventsOf("sp1") {
		if x.Type == event.RefundMismatch {
			ev = x
		}
	}
	if ev == nil {
		t.Fatalf("the forged notification is not stored as refund.mismatch: %v", e.eventsOf("sp1"))
	}
	var payload struct {
		Data struct{ Mismatch map[string]event.Discrepancy }
	}
	if err := json.Unmarshal(ev.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if d := payload.Data.Mismatch[field]; d.Queried != float64(200) || d.Notification != float64(700) {
		t.Fatalf("mismatch %+v", payload.Data.Mismatch)
	}
	for _, ev := range e.eventsOf("sp1") {
		if ev.Type == event.RefundSucceeded {
			t.Fatalf("a refund.succeeded was stored: %+v", ev)
		}
	}
	after, err := e.store.GetRefund(ctx, mchID, "sp1-a")
	if placedHere && (err != nil || after.State != stateBefore.State || after.RefundFee != 200) {
		t.Fatalf("the refund changed: %+v, before %+v", after, stateBefore)
	}
}

// reqInfo is a refund notification's req_info ciphertext.
func reqInfo(t *testing.T, body []byte) []byte {
	t.Helper()
	p, err := wxpay.DecodeXML(body)
	if err != nil {
		t.Fatal(err)
	}
	c, err := base64.StdEncoding.DecodeString(p.Get("req_info"))
	if err != nil || len(c)%aes.BlockSize != 0 {
		t.Fatalf("req_info: %d bytes, %v", len(c), err)
	}
	return c
}

// ecbDecrypt decrypts req_info with the test key's req_info key (the
// lowercase hex MD5 of the API key), block by block, padding kept.
func ecbDecrypt(t *testing.T, c []byte) []byte {
	t.Helper()
	sum := md5.Sum([]byte(apiKey))
	block, err := aes.NewCipher([]byte(hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(c))
	for i := 0; i < len(c); i += aes.BlockSize {
		block.Decrypt(out[i:i+aes.BlockSize], c[i:i+aes.BlockSize])
	}
	return out
}

// A spliced refund notification that reaches the gateway before the
// genuine one (the genuine was refused once, or delayed by whoever
// spliced) is stored as refund.mismatch under an id of its own: the
// genuine notification that follows still makes its refund.succeeded,
// and the refund becomes SUCCESS (before: the mismatch took the genuine
// event's id, the genuine notification was dropped as its duplicate, and
// the refund stayed PROCESSING). The same forgery sent again is one
// event.
func TestSplicedRefundNotificationBeforeTheGenuineOne(t *testing.T) {
	e := newEnv(t, true, nil)
	e.merchant.HTTPNotify = gateway.HTTPNotifyLoopback
	ctx := context.Background()
	a, bodyA, bodyB := refundsNotifiedElsewhere(t, e, e.svc, "sq1")
	forged := spliceRefundField(t, bodyA, bodyB, "refund_fee")

	for range 2 { // the forgery, twice
		if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: forged}); reply.Status != http.StatusOK {
			t.Fatalf("forged: reply %d %s", reply.Status, reply.Body)
		}
	}
	if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: bodyA}); reply.Status != http.StatusOK {
		t.Fatalf("genuine: reply %d %s", reply.Status, reply.Body)
	}
	genuine, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, a.RefundID, "SUCCESS"))
	if err != nil {
		t.Fatalf("the genuine notification's event: %v", err)
	}
	r, err := e.store.GetRefund(ctx, mchID, "sq1-a")
	if err != nil {
		t.Fatal(err)
	}
	if genuine.Type != event.RefundSucceeded || r.State != "SUCCESS" || r.RefundFee != 200 {
		t.Fatalf("after the forgery, the genuine notification: event %s, refund %s of %d", genuine.Type, r.State, r.RefundFee)
	}
	mismatches := 0
	for _, ev := range e.eventsOf("sq1") {
		if ev.Type == event.RefundMismatch {
			mismatches++
			if ev.ID == genuine.ID {
				t.Fatal("the mismatch has the genuine event's id")
			}
		}
	}
	if mismatches != 1 {
		t.Fatalf("%d refund.mismatch events for one forgery sent twice, want 1", mismatches)
	}
}

// refundsNotifiedElsewhere pays order no (1000 fen) and has placer refund
// it twice, 200 fen ("<no>-a") and 700 ("<no>-b"), their notifications
// going to a server that acknowledges them: the gateway does not see
// them, whoever reads them there (a forger) does. It returns the first
// refund and both notifications as WeChat sent them.
func refundsNotifiedElsewhere(t *testing.T, e *env, placer *gateway.Service, no string) (a *gateway.RefundResponse, bodyA, bodyB []byte) {
	t.Helper()
	e.merchant.HTTPNotify = gateway.HTTPNotifyLoopback
	e.placePaid(no, 1000)
	elsewhere := notifiedElsewhere(t)
	refund := func(rno string, fee int64) *gateway.RefundResponse {
		t.Helper()
		r, err := placer.Refund(context.Background(), e.merchant, &gateway.RefundRequest{OutTradeNo: no, OutRefundNo: rno, TotalFee: 1000,
			RefundFee: fee, NotifyURL: elsewhere})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, _ = refund(no+"-a", 200), refund(no+"-b", 700)
	observed := func(rno string) []byte {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			for _, n := range e.sim.Notifications() {
				if n.OutRefundNo == rno && n.Acknowledged {
					return n.Body
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("refund %s was never notified", rno)
		return nil
	}
	return a, observed(no + "-a"), observed(no + "-b")
}

// spliceRefundField is the refund notification bodyA with the req_info
// blocks that hold its field (an amount: 200 in bodyA, 700 in bodyB)
// taken from bodyB's (same layout). The test decrypts to find the blocks;
// a forger need not: the layout is public.
func spliceRefundField(t *testing.T, bodyA, bodyB []byte, field string) []byte {
	t.Helper()
	cipherA, cipherB := reqInfo(t, bodyA), reqInfo(t, bodyB)
	plainA := ecbDecrypt(t, cipherA)
	prefix := []byte("<" + field + "><![CDATA[")
	at := bytes.Index(plainA, prefix)
	if at < 0 || len(cipherA) != len(cipherB) {
		t.Fatalf("unexpected layouts: %q (%d and %d bytes)", plainA, len(cipherA), len(cipherB))
	}
	from, to := (at+len(prefix))/aes.BlockSize, (at+len(prefix)+len("200")-1)/aes.BlockSize
	spliced := bytes.Clone(cipherA)
	copy(spliced[from*aes.BlockSize:(to+1)*aes.BlockSize], cipherB[from*aes.BlockSize:(to+1)*aes.BlockSize])
	p, err := wxpay.DecodeXML(bodyA)
	if err != nil {
		t.Fatal(err)
	}
	p.Set("req_info", base64.StdEncoding.EncodeToString(spliced))
	forged, err := wxpay.EncodeXML(p)
	if err != nil {
		t.Fatal(err)
	}
	return forged
}

// Every figure of a refund's event that WeChat's refund query reports is
// compared with it; the settlement amounts, which API v2's query names
// only when coupons were used, are otherwise bounded by the amounts it
// confirmed (the amount less non-cash coupons is no more than the
// amount).
func TestRefundQueryDiscrepancies(t *testing.T) {
	amount := func(n int64) *int64 { return &n }
	query := func(settleTotal, settleRefund *int64) (*gateway.RefundQueryResponse, *gateway.RefundEntry) {
		q := &gateway.RefundQueryResponse{OutTradeNo: "o1", TransactionID: "tx1", TotalFee: 1000, SettlementTotalFee: settleTotal,
			Refunds: []gateway.RefundEntry{{OutRefundNo: "r1", RefundID: "rid1", RefundFee: 200, RefundStatus: "SUCCESS",
				SuccessTime: "2026-12-07 10:00:00", RecvAccount: "支付用户的零钱", RefundAccount: "REFUND_SOURCE_UNSETTLED_FUNDS",
				SettlementRefundFee: settleRefund}}}
		return q, &q.Refunds[0]
	}
	notice := func(data map[string]any) *gateway.RefundNotice {
		d := map[string]any{"total_fee": int64(1000), "settlement_total_fee": int64(1000), "settlement_refund_fee": int64(200),
			"success_time": "2026-12-07 10:00:00", "refund_recv_accout": "支付用户的零钱", "refund_account": "REFUND_SOURCE_UNSETTLED_FUNDS"}
		for k, v := range data {
			d[k] = v
		}
		return &gateway.RefundNotice{OutRefundNo: "r1", RefundID: "rid1", OutTradeNo: "o1", TransactionID: "tx1", Status: "SUCCESS", RefundFee: 200, Data: d}
	}
	tests := []struct {
		name                      string
		settleTotal, settleRefund *int64
		data                      map[string]any
		want                      []string // fields that disagree
	}{
		{name: "all agree, the query naming the settlement amounts", settleTotal: amount(1000), settleRefund: amount(200)},
		{name: "all agree, the query naming none"},
		{name: "settlement_refund_fee other than the query's", settleRefund: amount(200), data: map[string]any{"settlement_refund_fee": int64(150)}, want: []string{"settlement_refund_fee"}},
		{name: "settlement_total_fee other than the query's", settleTotal: amount(900), want: []string{"settlement_total_fee"}},
		{name: "settlement_refund_fee above the refund", data: map[string]any{"settlement_refund_fee": int64(700)}, want: []string{"settlement_refund_fee"}},
		{name: "settlement_refund_fee below the refund, no coupon named", data: map[string]any{"settlement_refund_fee": int64(150)}},
		{name: "settlement_total_fee above the order", data: map[string]any{"settlement_total_fee": int64(1001)}, want: []string{"settlement_total_fee"}},
		{name: "another refund's account", data: map[string]any{"refund_recv_accout": "招商银行信用卡0403"}, want: []string{"refund_recv_accout"}},
		{name: "other funds", data: map[string]any{"refund_account": "REFUND_SOURCE_RECHARGE_FUNDS"}, want: []string{"refund_account"}},
		{name: "another success time", data: map[string]any{"success_time": "2026-12-07 10:00:01"}, want: []string{"success_time"}},
	}
	for _, tt := range tests {
		q, entry := query(tt.settleTotal, tt.settleRefund)
		diff := gateway.RefundQueryDiscrepancies(q, entry, notice(tt.data))
		var got []string
		for k := range diff {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: discrepancies %v, want %v", tt.name, diff, tt.want)
		}
	}
}
