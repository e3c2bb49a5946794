package wxpaysim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

func TestOrderQuery(t *testing.T) {
	clk := newClock(t0)
	e := newTLSEnv(t, Config{Now: clk.Now, TimeScale: 1000}) // refunds stay PROCESSING
	api := e.merchantAPI(t)
	for _, no := range []string{"Q-NOTPAY", "Q-PAID", "Q-PAYERROR", "Q-CLOSED", "Q-REFUND"} {
		api.place(t, no, "https://example.com/wxpay/notify")
	}
	clk.Advance(90 * time.Second)
	paid := pay(t, e.sim, "Q-PAID", PayOptions{Lost: true})
	pay(t, e.sim, "Q-PAYERROR", PayOptions{Fail: true, Lost: true})
	refunded := pay(t, e.sim, "Q-REFUND", PayOptions{Lost: true})
	wantOK(t, api.call(t, "/secapi/pay/refund", refundKV("Q-REFUND", "QR1", "100")...))
	wantOK(t, api.call(t, "/pay/closeorder", "out_trade_no", "Q-CLOSED"))

	tests := []struct {
		name      string
		kv        []string
		errCode   string
		state     string
		txID      string
		wantPaid  bool
		wantField map[string]string
	}{
		{name: "NOTPAY", kv: []string{"out_trade_no", "Q-NOTPAY"}, state: StateNotPay},
		{name: "SUCCESS", kv: []string{"out_trade_no", "Q-PAID"}, state: StateSuccess, txID: paid.TransactionID, wantPaid: true},
		{name: "SUCCESS by transaction_id", kv: []string{"transaction_id", paid.TransactionID}, state: StateSuccess, txID: paid.TransactionID, wantPaid: true},
		{name: "transaction_id wins over out_trade_no", kv: []string{"transaction_id", paid.TransactionID, "out_trade_no", "Q-NOTPAY"}, state: StateSuccess, txID: paid.TransactionID, wantPaid: true},
		{name: "PAYERROR", kv: []string{"out_trade_no", "Q-PAYERROR"}, state: StatePayError},
		{name: "CLOSED", kv: []string{"out_trade_no", "Q-CLOSED"}, state: StateClosed},
		{name: "REFUND", kv: []string{"out_trade_no", "Q-REFUND"}, state: StateRefund, txID: refunded.TransactionID, wantPaid: true},
		{name: "unknown out_trade_no", kv: []string{"out_trade_no", "Q-NOPE"}, errCode: "ORDERNOTEXIST"},
		{name: "unknown transaction_id", kv: []string{"transaction_id", "4200000000000000000000000000"}, errCode: "ORDERNOTEXIST"},
		{name: "neither", kv: nil, errCode: "LACK_PARAMS"},
		{name: "no appid", kv: []string{"appid", "", "out_trade_no", "Q-PAID"}, errCode: "LACK_PARAMS"},
		{name: "appid of another merchant", kv: []string{"appid", "wx0000000000000000", "out_trade_no", "Q-PAID"}, errCode: "APPID_MCHID_NOT_MATCH"},
		{name: "malformed out_trade_no", kv: []string{"out_trade_no", "Q PAID"}, errCode: "PARAM_ERROR"},
	}
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		for _, tc := range tests {
			t.Run(string(st)+"/"+tc.name, func(t *testing.T) {
				p := api.with(st).call(t, "/pay/orderquery", tc.kv...)
				if tc.errCode != "" {
					wantErrCode(t, p, tc.errCode)
					return
				}
				wantOK(t, p)
				if p.Get("trade_state") != tc.state || p.Get("trade_state_desc") == "" || p.Get("appid") != appA {
					t.Errorf("trade_state %q (%q), appid %q, want %s", p.Get("trade_state"), p.Get("trade_state_desc"), p.Get("appid"), tc.state)
				}
				if !strings.HasPrefix(p.Get("out_trade_no"), "Q-") {
					t.Errorf("out_trade_no %q", p.Get("out_trade_no"))
				}
				paidFields := []string{"transaction_id", "total_fee", "cash_fee", "time_end", "trade_type", "openid", "bank_type", "fee_type", "attach"}
				if !tc.wantPaid {
					for _, f := range paidFields {
						if v, ok := p.Lookup(f); ok {
							t.Errorf("unpaid order answers %s=%q", f, v)
						}
					}
					return
				}
				want := map[string]string{
					"transaction_id": tc.txID, "total_fee": "888", "cash_fee": "888", "time_end": "20240501120130",
					"trade_type": "JSAPI", "openid": testOpenID, "bank_type": "CMC", "fee_type": "CNY", "attach": "支付测试",
					"device_info": "WEB", "is_subscribe": "N",
				}
				for f, v := range want {
					if p.Get(f) != v {
						t.Errorf("%s = %q, want %q", f, p.Get(f), v)
					}
				}
			})
		}
	}
}

func TestCloseOrder(t *testing.T) {
	e := newTLSEnv(t, Config{Now: newClock(t0).Now})
	api := e.merchantAPI(t)
	for _, no := range []string{"C-NOTPAY", "C-PAYERROR", "C-PAID", "C-CLOSED"} {
		api.place(t, no, "https://example.com/wxpay/notify")
	}
	pay(t, e.sim, "C-PAYERROR", PayOptions{Fail: true, Lost: true})
	pay(t, e.sim, "C-PAID", PayOptions{Lost: true})
	if err := e.sim.CloseOrder(testMchID, "C-CLOSED"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, outTradeNo, errCode, state string
	}{
		{"NOTPAY closes", "C-NOTPAY", "", StateClosed},
		{"closing again", "C-NOTPAY", "ORDERCLOSED", StateClosed},
		{"PAYERROR closes", "C-PAYERROR", "", StateClosed},
		{"paid", "C-PAID", "ORDERPAID", StateSuccess},
		{"closed", "C-CLOSED", "ORDERCLOSED", StateClosed},
		{"unknown", "C-NOPE", "ORDERNOTEXIST", ""},
		{"missing out_trade_no", "", "LACK_PARAMS", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := api.with(wxpay.SignTypeHMACSHA256).call(t, "/pay/closeorder", "out_trade_no", tc.outTradeNo)
			if tc.errCode == "" {
				wantOK(t, p)
				if p.Get("result_msg") != "OK" {
					t.Errorf("result_msg %q", p.Get("result_msg"))
				}
			} else {
				wantErrCode(t, p, tc.errCode)
			}
			if tc.state != "" {
				if o, _ := e.sim.Order(testMchID, tc.outTradeNo); o.State != tc.state {
					t.Errorf("state %s, want %s", o.State, tc.state)
				}
			}
		})
	}

	t.Run("closed order", func(t *testing.T) {
		if _, err := e.sim.Pay(context.Background(), PayOptions{MchID: testMchID, OutTradeNo: "C-NOTPAY"}); !errors.Is(err, ErrOrderClosed) {
			t.Errorf("Pay: %v, want ErrOrderClosed", err)
		}
		kv := []string{"out_trade_no", "C-NOTPAY", "notify_url", "https://example.com/wxpay/notify", "attach", "支付测试", "device_info", "WEB"}
		for _, f := range baseParams("C-NOTPAY") {
			if f.Name != "out_trade_no" && f.Name != "notify_url" {
				kv = append(kv, f.Name, f.Value)
			}
		}
		wantErrCode(t, api.call(t, "/pay/unifiedorder", kv...), "ORDERCLOSED")
		p := api.call(t, "/pay/orderquery", "out_trade_no", "C-NOTPAY")
		wantOK(t, p)
		if p.Get("trade_state") != StateClosed {
			t.Errorf("trade_state %s", p.Get("trade_state"))
		}
	})
}

// TestCommonChecks checks the refusals every new API shares with
// unifiedorder.
func TestCommonChecks(t *testing.T) {
	e := newTLSEnv(t, Config{Now: newClock(t0).Now})
	api := e.merchantAPI(t)
	paths := []string{"/pay/orderquery", "/pay/closeorder", "/secapi/pay/refund", "/pay/refundquery", "/pay/downloadbill"}
	wrongKey := api.with(wxpay.SignTypeMD5)
	wrongKey.key = "0123456789abcdef0123456789abcdef"
	unknown := api.with(wxpay.SignTypeMD5)
	unknown.mchID = "10000999"
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			send := func(body []byte) wxpay.Params {
				t.Helper()
				resp, b, err := api.post(t, path, body)
				if err != nil {
					t.Fatalf("POST %s: %v", path, err)
				}
				return decodeAnswer(t, resp, b, testKey, wxpay.SignTypeMD5)
			}
			wantRefused(t, wrongKey.call(t, path, "out_trade_no", "X"), MsgInvalidSign)
			// Signed with MD5 but naming HMAC-SHA256: checked with the type
			// the request names.
			wantRefused(t, send(signedXML(t, params("appid", appA, "mch_id", testMchID, "nonce_str", "n", "sign_type", "HMAC-SHA256", "out_trade_no", "X"), testKey, wxpay.SignTypeMD5)), MsgInvalidSign)
			wantRefused(t, send(signedXML(t, params("appid", appA, "mch_id", testMchID, "nonce_str", "n", "sign_type", "SHA1"), testKey, wxpay.SignTypeMD5)), MsgBadSignType)
			wantRefused(t, send(signedXML(t, params("appid", appA, "nonce_str", "n"), testKey, wxpay.SignTypeMD5)), MsgMissingMchID)
			wantRefused(t, send([]byte("<xml><mch_id>")), MsgBadXML)
			wantRefused(t, send(nil), MsgEmptyBody)
			if path != "/secapi/pay/refund" { // there the certificate names another merchant
				wantRefused(t, unknown.call(t, path, "out_trade_no", "X"), MsgUnknownMchID)
			}
			resp, err := api.hc.Get(api.base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			wantRefused(t, decodeAnswer(t, resp, body, testKey, wxpay.SignTypeMD5), MsgNotPost)
		})
	}
}

func TestFaultsOnNewAPIs(t *testing.T) {
	e := newTLSEnv(t, Config{Now: newClock(t0).Now, TimeScale: 1000})
	api := e.merchantAPI(t)
	api.place(t, "F1", "https://example.com/wxpay/notify")
	api.place(t, "F2", "https://example.com/wxpay/notify")
	pay(t, e.sim, "F1", PayOptions{Lost: true})

	t.Run("signed failures", func(t *testing.T) {
		tests := []struct {
			api, path string
			kv        []string
			code      string
		}{
			{APIOrderQuery, "/pay/orderquery", []string{"out_trade_no", "F1"}, "SYSTEMERROR"},
			{APICloseOrder, "/pay/closeorder", []string{"out_trade_no", "F2"}, "FREQUENCY_LIMITED"},
			{"/secapi/pay/refund", "/secapi/pay/refund", refundKV("F1", "FR1", "1"), "BIZERR_NEED_RETRY"},
			{"/pay/refundquery", "/pay/refundquery", []string{"out_trade_no", "F1"}, "SYSTEMERROR"},
		}
		for _, tc := range tests {
			e.sim.FailNext(tc.api, 1, tc.code)
			wantErrCode(t, api.call(t, tc.path, tc.kv...), tc.code)
		}
		// Nothing changed.
		if o, _ := e.sim.Order(testMchID, "F2"); o.State != StateNotPay {
			t.Errorf("a failed closeorder closed the order: %s", o.State)
		}
		if n := len(e.sim.Refunds()); n != 0 {
			t.Errorf("a failed refund created %d refunds", n)
		}
		// The faults are used up.
		wantOK(t, api.call(t, "/pay/orderquery", "out_trade_no", "F1"))
		wantErrCode(t, api.call(t, "/pay/refundquery", "out_trade_no", "F1"), "REFUNDNOTEXIST")
	})

	t.Run("downloadbill", func(t *testing.T) {
		e.sim.FailNext(APIDownloadBill, 1, "")
		p := api.call(t, "/pay/downloadbill", "bill_date", "20240430")
		wantRefused(t, p, "SYSTEMERROR")
	})

	t.Run("refused calls keep the fault", func(t *testing.T) {
		e.sim.FailNext(APIRefund, 1, "SYSTEMERROR")
		noCert := e.api(t, nil)
		wantRefused(t, noCert.call(t, "/secapi/pay/refund", refundKV("F1", "FR2", "1")...), MsgCertInvalid)
		wantErrCode(t, api.call(t, "/secapi/pay/refund", refundKV("F1", "FR2", "1")...), "SYSTEMERROR")
		wantOK(t, api.call(t, "/secapi/pay/refund", refundKV("F1", "FR2", "1")...))
	})

	t.Run("delay", func(t *testing.T) {
		slow := e.merchantAPI(t)
		slow.hc.Timeout = 100 * time.Millisecond
		e.sim.DelayNext(APIRefund, 1, 10*time.Second)
		start := time.Now()
		if _, _, err := slow.post(t, "/secapi/pay/refund", slow.request(t, refundKV("F1", "FR3", "2")...)); err == nil {
			t.Fatal("a delayed refund answered before the client's timeout")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the timed-out call took %v", d)
		}
		// The answer was lost, not the refund: retrying gets the same one.
		var id string
		for _, rf := range e.sim.Refunds() {
			if rf.OutRefundNo == "FR3" {
				id = rf.RefundID
			}
		}
		if id == "" {
			t.Fatal("the delayed refund was not accepted")
		}
		p := api.call(t, "/secapi/pay/refund", refundKV("F1", "FR3", "2")...)
		wantOK(t, p)
		if p.Get("refund_id") != id {
			t.Errorf("retry refund_id %s, want %s", p.Get("refund_id"), id)
		}
		e.sim.DelayNext("/pay/orderquery", 1, 30*time.Millisecond)
		start = time.Now()
		wantOK(t, api.call(t, "/pay/orderquery", "out_trade_no", "F1"))
		if d := time.Since(start); d < 30*time.Millisecond {
			t.Errorf("delayed orderquery answered after %v", d)
		}
	})
}

func TestLostNotification(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newTLSEnv(t, Config{Now: newClock(t0).Now, TimeScale: 0.001})
	api := e.merchantAPI(t)
	api.place(t, "L1", ns.URL())
	ctx := context.Background()

	if _, err := e.sim.Pay(ctx, PayOptions{MchID: testMchID, OutTradeNo: "L1", Lost: true, Duplicate: true}); !errors.Is(err, ErrInvalidPayOptions) {
		t.Fatalf("Lost with Duplicate: %v, want ErrInvalidPayOptions", err)
	}
	if err := e.sim.SendNotification(ctx, testMchID, "L1"); !errors.Is(err, ErrNotPaid) {
		t.Errorf("SendNotification before payment: %v, want ErrNotPaid", err)
	}
	p := pay(t, e.sim, "L1", PayOptions{Lost: true})

	// Reconciliation finds the payment WeChat never notified.
	q := api.call(t, "/pay/orderquery", "out_trade_no", "L1")
	wantOK(t, q)
	if q.Get("trade_state") != StateSuccess || q.Get("transaction_id") != p.TransactionID {
		t.Errorf("orderquery: %s %s", q.Get("trade_state"), q.Get("transaction_id"))
	}
	time.Sleep(50 * time.Millisecond) // the whole retry schedule at this scale is ~90s × 0.001
	if ns.count() != 0 || len(e.sim.Notifications()) != 0 {
		t.Fatalf("a lost payment was notified: %d deliveries, %d records", ns.count(), len(e.sim.Notifications()))
	}

	// The late notification arrives after reconciliation.
	if err := e.sim.SendNotification(ctx, testMchID, "L1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the late notification", func() bool { return ns.count() == 1 })
	n, err := wxpay.VerifyNotification(ns.received()[0].body, testKey)
	if err != nil {
		t.Fatalf("late notification: %v", err)
	}
	if n.TransactionID() != p.TransactionID || n.OutTradeNo() != "L1" || !n.Succeeded() || n.Get("time_end") != "20240501120000" {
		t.Errorf("late notification %v", n.Params.Map())
	}
	waitFor(t, "the acknowledgement", func() bool { return e.sim.Notifications()[0].Acknowledged })
	rec := e.sim.Notifications()[0]
	if rec.Kind != KindPayment || rec.OutTradeNo != "L1" || rec.TransactionID != p.TransactionID || rec.OutRefundNo != "" {
		t.Errorf("record %+v", rec)
	}

	tests := []struct {
		name, outTradeNo string
		want             error
	}{
		{"unknown", "L-NOPE", ErrUnknownOrder},
	}
	for _, tc := range tests {
		if err := e.sim.SendNotification(ctx, testMchID, tc.outTradeNo); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := e.sim.SendNotification(cancelled, testMchID, "L1"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	e.sim.Close()
	if err := e.sim.SendNotification(ctx, testMchID, "L1"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestLifecycleControlRoutes(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newTLSEnv(t, Config{Now: newClock(t0).Now, TimeScale: 0.001})
	api := e.merchantAPI(t)
	api.place(t, "CL1", ns.URL())
	api.place(t, "CL2", ns.URL())
	hc := e.srv.Client()
	post := func(path, body string) (int, string) {
		resp, err := hc.Post(e.srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	if status, body := post("/sim/pay", `{"out_trade_no":"CL1","mch_id":"10000100","lost":true}`); status != http.StatusOK {
		t.Fatalf("/sim/pay lost: %d %s", status, body)
	}
	wantOK(t, api.call(t, "/secapi/pay/refund", refundKV("CL1", "CLR1", "88", "notify_url", ns.URL())...))
	waitFor(t, "the refund notification", func() bool { return ns.count() == 1 })
	if recs := e.sim.Notifications(); len(recs) != 1 || recs[0].Kind != KindRefund {
		t.Fatalf("records %+v, want the refund's only", recs)
	}

	tests := []struct {
		name, body string
		status     int
	}{
		{"send", `{"mch_id":"10000100","out_trade_no":"CL1"}`, http.StatusAccepted},
		{"not paid", `{"mch_id":"10000100","out_trade_no":"CL2"}`, http.StatusConflict},
		{"unknown", `{"mch_id":"10000100","out_trade_no":"nope"}`, http.StatusNotFound},
		{"no mch_id", `{"out_trade_no":"CL1"}`, http.StatusBadRequest},
		{"unknown field", `{"mch_id":"10000100","out_trade_no":"CL1","x":1}`, http.StatusBadRequest},
	}
	for _, tc := range tests {
		if status, body := post("/sim/notify", tc.body); status != tc.status {
			t.Errorf("/sim/notify %s: %d %s, want %d", tc.name, status, body, tc.status)
		}
	}
	waitFor(t, "the late pay notification", func() bool { return ns.count() == 2 })

	get := func(path string) (*http.Response, []byte) {
		resp, err := hc.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, b := get("/sim/refunds")
	var refunds []map[string]any
	if err := json.Unmarshal(b, &refunds); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/sim/refunds: %d %v %s", resp.StatusCode, err, b)
	}
	waitFor(t, "the refund's success", func() bool { return e.sim.Refunds()[0].Status == RefundStatusSuccess })
	if len(refunds) != 1 || refunds[0]["out_refund_no"] != "CLR1" || refunds[0]["refund_fee"] != 88.0 || refunds[0]["mch_id"] != testMchID ||
		!strings.HasPrefix(refunds[0]["refund_id"].(string), "50000") || refunds[0]["notify_url"] != ns.URL() {
		t.Errorf("/sim/refunds = %s", b)
	}

	_, b = get("/sim/notifications")
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0]["kind"] != KindRefund || recs[0]["out_refund_no"] != "CLR1" || recs[1]["kind"] != KindPayment {
		t.Errorf("/sim/notifications = %s", b)
	}
	if _, ok := recs[1]["out_refund_no"]; ok {
		t.Errorf("a pay notification record has out_refund_no: %s", b)
	}

	for _, f := range []string{`{"api":"refund","err_code":"SYSTEMERROR"}`, `{"api":"/secapi/pay/refund","delay":"1ms"}`, `{"api":"downloadbill","err_code":"SYSTEMERROR"}`} {
		if status, body := post("/sim/faults", f); status != http.StatusNoContent {
			t.Errorf("/sim/faults %s: %d %s", f, status, body)
		}
	}
	wantErrCode(t, api.call(t, "/secapi/pay/refund", refundKV("CL1", "CLR2", "1")...), "SYSTEMERROR")
	if status, body := post("/sim/faults", `{"api":"micropay","err_code":"SYSTEMERROR"}`); status != http.StatusBadRequest || !strings.Contains(body, "refundquery") {
		t.Errorf("unknown api: %d %s", status, body)
	}
}
