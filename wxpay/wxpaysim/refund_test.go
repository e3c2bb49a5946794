package wxpaysim

import (
	"bytes"
	"crypto/aes"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

var refundIDPattern = regexp.MustCompile(`^50000[0-9]{24}$`)

const otherMchID = "10000200"

func TestTLSConfig(t *testing.T) {
	pki := newPKI(t, "ca")
	cert := pki.issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	with := New(Config{ClientCAs: pki.pool})
	defer with.Close()
	cfg := with.TLSConfig(cert)
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs != pki.pool || len(cfg.Certificates) != 1 || cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLSConfig = %+v", cfg)
	}
	without := New(Config{})
	defer without.Close()
	if cfg := without.TLSConfig(cert); cfg.ClientAuth != tls.RequestClientCert || cfg.ClientCAs != nil {
		t.Errorf("TLSConfig without ClientCAs: ClientAuth %v", cfg.ClientAuth)
	}
}

func TestRefundClientCertificate(t *testing.T) {
	merchants := []Merchant{
		{MchID: testMchID, Key: testKey, AppIDs: []string{appA}},
		{MchID: otherMchID, Key: "0123456789abcdef0123456789abcdef", AppIDs: []string{appB}},
	}
	pki := newPKI(t, "WeChat Pay merchant CA")
	untrusted := newPKI(t, "untrusted CA")
	// The server verifies certificates (VerifyClientCertIfGiven, what
	// TLSConfig returns) or only requests them: the simulator checks them
	// itself either way.
	verifying := newTLSEnvWith(t, Config{Merchants: merchants, ClientCAs: pki.pool, Now: newClock(t0).Now, TimeScale: 1000}, pki, nil)
	requesting := newTLSEnvWith(t, Config{Merchants: merchants, ClientCAs: pki.pool, Now: newClock(t0).Now, TimeScale: 1000}, pki,
		func(c *tls.Config) { c.ClientAuth = tls.RequestClientCert })
	noCAs := newTLSEnvWith(t, Config{Merchants: merchants, Now: newClock(t0).Now, TimeScale: 1000}, pki, nil)

	right := pki.clientCert(t, testMchID)
	otherMerchant := pki.clientCert(t, otherMchID)
	foreign := untrusted.clientCert(t, testMchID)
	serverOnly := pki.issue(t, testMchID, x509.ExtKeyUsageServerAuth)
	noCN := pki.clientCert(t, "")

	tests := []struct {
		name string
		env  *tenv
		cert *tls.Certificate
		want string // "" for success, MsgCertInvalid, or "tls" for a handshake failure
	}{
		{"verifying/right certificate", verifying, right, ""},
		{"verifying/no certificate", verifying, nil, MsgCertInvalid},
		{"verifying/another merchant's", verifying, otherMerchant, MsgCertInvalid},
		// The client offers no certificate that the server's list of
		// acceptable CAs does not name.
		{"verifying/untrusted CA", verifying, foreign, MsgCertInvalid},
		{"verifying/server certificate", verifying, &serverOnly, "tls"},
		{"requesting/right certificate", requesting, right, ""},
		{"requesting/no certificate", requesting, nil, MsgCertInvalid},
		{"requesting/another merchant's", requesting, otherMerchant, MsgCertInvalid},
		{"requesting/untrusted CA", requesting, foreign, MsgCertInvalid},
		{"requesting/server certificate", requesting, &serverOnly, MsgCertInvalid},
		{"requesting/no CommonName", requesting, noCN, MsgCertInvalid},
		{"no ClientCAs/right certificate", noCAs, right, MsgCertInvalid},
	}
	for _, e := range []*tenv{verifying, requesting, noCAs} {
		e.merchantAPI(t).place(t, "T1", "https://example.com/wxpay/notify")
		pay(t, e.sim, "T1", PayOptions{Lost: true})
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := tc.env.api(t, tc.cert)
			outRefundNo := "TR" + strconv.Itoa(i)
			before := len(tc.env.sim.Refunds())
			resp, body, err := api.post(t, "/secapi/pay/refund", api.request(t, refundKV("T1", outRefundNo, "1")...))
			switch tc.want {
			case "tls":
				if err == nil {
					t.Fatalf("the handshake succeeded: %d %s", resp.StatusCode, body)
				}
			case "":
				if err != nil {
					t.Fatal(err)
				}
				p := decodeAnswer(t, resp, body, testKey, wxpay.SignTypeMD5)
				wantOK(t, p)
				if p.Get("out_refund_no") != outRefundNo || !refundIDPattern.MatchString(p.Get("refund_id")) {
					t.Errorf("answer %v", p.Map())
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				wantRefused(t, decodeAnswer(t, resp, body, testKey, wxpay.SignTypeMD5), tc.want)
			}
			created := len(tc.env.sim.Refunds()) - before
			if want := map[bool]int{true: 1, false: 0}[tc.want == ""]; created != want {
				t.Errorf("%d refunds created, want %d", created, want)
			}
		})
	}

	t.Run("plain HTTP", func(t *testing.T) {
		srv := httptest.NewServer(requesting.sim)
		defer srv.Close()
		api := &rawClient{base: srv.URL, hc: srv.Client(), mchID: testMchID, key: testKey, st: wxpay.SignTypeMD5}
		wantRefused(t, api.call(t, "/secapi/pay/refund", refundKV("T1", "TR-http", "1")...), MsgCertInvalid)
		// The other routes do not need a certificate.
		wantOK(t, api.call(t, "/pay/orderquery", "out_trade_no", "T1"))
	})
}

func TestRefund(t *testing.T) {
	e := newTLSEnv(t, Config{Now: newClock(t0).Now, TimeScale: 1000}) // refunds stay PROCESSING
	api := e.merchantAPI(t)
	for _, no := range []string{"R1", "R-NOTPAY", "R-CLOSED"} {
		api.place(t, no, "https://example.com/wxpay/notify")
	}
	paid := pay(t, e.sim, "R1", PayOptions{Lost: true})
	if err := e.sim.CloseOrder(testMchID, "R-CLOSED"); err != nil {
		t.Fatal(err)
	}

	ids := map[string]string{} // out_refund_no → refund_id
	steps := []struct {
		name    string
		st      wxpay.SignType
		kv      []string
		errCode string
		refunds int // the order's refunds after the step
	}{
		{"first partial refund", wxpay.SignTypeMD5, refundKV("R1", "RF1", "300", "refund_desc", "商品已售完"), "", 1},
		{"same refund again", wxpay.SignTypeHMACSHA256, refundKV("R1", "RF1", "300"), "", 1},
		{"same refund by transaction_id", wxpay.SignTypeMD5, []string{"transaction_id", paid.TransactionID, "out_refund_no", "RF1", "total_fee", "888", "refund_fee", "300"}, "", 1},
		{"same out_refund_no, other amount", wxpay.SignTypeMD5, refundKV("R1", "RF1", "301"), "REFUND_FEE_MISMATCH", 1},
		{"more than what is left", wxpay.SignTypeMD5, refundKV("R1", "RF2", "589"), "INVALID_REQUEST", 1},
		{"wrong total_fee", wxpay.SignTypeMD5, []string{"out_trade_no", "R1", "out_refund_no", "RF2", "total_fee", "889", "refund_fee", "1"}, "REFUND_FEE_MISMATCH", 1},
		{"what is left", wxpay.SignTypeHMACSHA256, refundKV("R1", "RF2", "588", "refund_fee_type", "CNY"), "", 2},
		{"nothing left", wxpay.SignTypeMD5, refundKV("R1", "RF3", "1"), "ERROR", 2},
		{"RF2 again after the order is fully refunded", wxpay.SignTypeMD5, refundKV("R1", "RF2", "588"), "", 2},
		{"unknown order", wxpay.SignTypeMD5, refundKV("R-NOPE", "RF4", "1"), "ORDERNOTEXIST", 2},
		{"unknown transaction_id", wxpay.SignTypeMD5, []string{"transaction_id", "4200000000000000000000000000", "out_refund_no", "RF4", "total_fee", "888", "refund_fee", "1"}, "ORDERNOTEXIST", 2},
		{"order not paid", wxpay.SignTypeMD5, refundKV("R-NOTPAY", "RF4", "1"), "TRADE_STATE_ERROR", 2},
		{"order closed", wxpay.SignTypeMD5, refundKV("R-CLOSED", "RF4", "1"), "TRADE_STATE_ERROR", 2},
		{"out_refund_no of another order", wxpay.SignTypeMD5, []string{"out_trade_no", "R-NOTPAY", "out_refund_no", "RF1", "total_fee", "888", "refund_fee", "300"}, "PARAM_ERROR", 2},
		{"refund_fee 0", wxpay.SignTypeMD5, refundKV("R1", "RF4", "0"), "PARAM_ERROR", 2},
		{"refund_fee negative", wxpay.SignTypeMD5, refundKV("R1", "RF4", "-1"), "PARAM_ERROR", 2},
		{"no out_refund_no", wxpay.SignTypeMD5, refundKV("R1", "", "1"), "LACK_PARAMS", 2},
		{"no refund_fee", wxpay.SignTypeMD5, refundKV("R1", "RF4", ""), "LACK_PARAMS", 2},
		{"no order", wxpay.SignTypeMD5, []string{"out_refund_no", "RF4", "total_fee", "888", "refund_fee", "1"}, "LACK_PARAMS", 2},
		{"bad out_refund_no", wxpay.SignTypeMD5, refundKV("R1", "RF 4", "1"), "PARAM_ERROR", 2},
		{"bad refund_fee_type", wxpay.SignTypeMD5, refundKV("R1", "RF4", "1", "refund_fee_type", "USD"), "PARAM_ERROR", 2},
		{"notify_url with a query", wxpay.SignTypeMD5, refundKV("R1", "RF4", "1", "notify_url", "https://example.com/n?a=1"), "PARAM_ERROR", 2},
		{"appid of another merchant", wxpay.SignTypeMD5, refundKV("R1", "RF4", "1", "appid", "wx0000000000000000"), "APPID_MCHID_NOT_MATCH", 2},
	}
	for _, step := range steps {
		// Steps depend on each other: no t.Run, stop at the first failure.
		p := api.with(step.st).call(t, "/secapi/pay/refund", step.kv...)
		outRefundNo := ""
		for i := 0; i+1 < len(step.kv); i += 2 {
			if step.kv[i] == "out_refund_no" {
				outRefundNo = step.kv[i+1]
			}
		}
		if step.errCode != "" {
			if p.Get("err_code") != step.errCode {
				t.Fatalf("%s: err_code %q (%s), want %s", step.name, p.Get("err_code"), p.Get("err_code_des"), step.errCode)
			}
			wantErrCode(t, p, step.errCode)
			if des, ok := map[string]string{"INVALID_REQUEST": DesRefundFeeTooHigh, "ERROR": DesFullyRefunded}[step.errCode]; ok && p.Get("err_code_des") != des {
				t.Errorf("%s: err_code_des %q, want %q", step.name, p.Get("err_code_des"), des)
			}
		} else {
			wantOK(t, p)
			want := map[string]string{
				"transaction_id": paid.TransactionID, "out_trade_no": "R1", "out_refund_no": outRefundNo,
				"total_fee": "888", "cash_fee": "888", "refund_fee": p.Get("cash_refund_fee"), "appid": appA, "mch_id": testMchID,
			}
			for f, v := range want {
				if p.Get(f) != v || v == "" {
					t.Errorf("%s: %s = %q, want %q", step.name, f, p.Get(f), v)
				}
			}
			id := p.Get("refund_id")
			if !refundIDPattern.MatchString(id) {
				t.Errorf("%s: refund_id %q", step.name, id)
			}
			if prev, ok := ids[outRefundNo]; ok && prev != id {
				t.Errorf("%s: refund_id %s, the first answer said %s", step.name, id, prev)
			}
			ids[outRefundNo] = id
		}
		if n := len(e.sim.Refunds()); n != step.refunds {
			t.Fatalf("%s: %d refunds, want %d", step.name, n, step.refunds)
		}
	}

	// A refund_fee above the request's own total_fee: refused outright,
	// unsigned, before the order is looked at.
	wantRefused(t, api.call(t, "/secapi/pay/refund", []string{"out_trade_no", "R1", "out_refund_no", "RF5", "total_fee", "888", "refund_fee", "889"}...), MsgInvalidRefundFee)
	if n := len(e.sim.Refunds()); n != 2 {
		t.Fatalf("a refused refund changed the refunds: %d", n)
	}

	refunds := e.sim.Refunds()
	var sum int64
	for i, rf := range refunds {
		sum += rf.RefundFee
		want := Refund{
			MchID: testMchID, OutTradeNo: "R1", TransactionID: paid.TransactionID, OutRefundNo: "RF" + strconv.Itoa(i+1),
			RefundID: ids["RF"+strconv.Itoa(i+1)], Status: RefundStatusProcessing, RefundFee: rf.RefundFee, TotalFee: 888, CreatedAt: t0,
		}
		if rf != want {
			t.Errorf("refund %d = %+v, want %+v", i, rf, want)
		}
	}
	if sum != 888 {
		t.Errorf("refunded %d in all, want 888", sum)
	}
	if p := api.call(t, "/pay/orderquery", "out_trade_no", "R1"); p.Get("trade_state") != StateRefund || p.Get("total_fee") != "888" {
		t.Errorf("orderquery after refunds: %s %s", p.Get("trade_state"), p.Get("total_fee"))
	}
	if o, _ := e.sim.Order(testMchID, "R1"); o.State != StateSuccess {
		t.Errorf("Order.State %s, want SUCCESS", o.State)
	}
	// A refunded order is still paid for unifiedorder and Pay.
	if _, err := e.sim.Pay(t.Context(), PayOptions{MchID: testMchID, OutTradeNo: "R1"}); !errors.Is(err, ErrOrderPaid) {
		t.Errorf("Pay: %v", err)
	}
}

func TestRefundFailNextRetry(t *testing.T) {
	for _, code := range []string{"SYSTEMERROR", "FREQUENCY_LIMITED", "BIZERR_NEED_RETRY"} {
		t.Run(code, func(t *testing.T) {
			e := newTLSEnv(t, Config{Now: newClock(t0).Now, TimeScale: 1000})
			api := e.merchantAPI(t)
			api.place(t, "S1", "https://example.com/wxpay/notify")
			pay(t, e.sim, "S1", PayOptions{Lost: true})
			e.sim.FailNext(APIRefund, 2, code)
			for i := range 2 {
				wantErrCode(t, api.call(t, "/secapi/pay/refund", refundKV("S1", "SR1", "888")...), code)
				if n := len(e.sim.Refunds()); n != 0 {
					t.Fatalf("failed call %d created %d refunds", i+1, n)
				}
			}
			first := api.call(t, "/secapi/pay/refund", refundKV("S1", "SR1", "888")...)
			wantOK(t, first)
			again := api.call(t, "/secapi/pay/refund", refundKV("S1", "SR1", "888")...)
			wantOK(t, again)
			if refunds := e.sim.Refunds(); len(refunds) != 1 || refunds[0].RefundID != first.Get("refund_id") || again.Get("refund_id") != first.Get("refund_id") {
				t.Errorf("refunds %+v, answers %s %s", refunds, first.Get("refund_id"), again.Get("refund_id"))
			}
		})
	}
}

func TestRefundQuery(t *testing.T) {
	clk := newClock(t0)
	slow := newTLSEnv(t, Config{Now: clk.Now, TimeScale: 1000}) // PROCESSING for 5000s
	fast := newTLSEnv(t, Config{Now: clk.Now, TimeScale: 0.001})
	type ids struct{ tx, rf1, rf2 string }
	setup := func(e *tenv) ids {
		api := e.merchantAPI(t)
		api.place(t, "RQ1", "https://example.com/wxpay/notify")
		api.place(t, "RQ-NONE", "https://example.com/wxpay/notify")
		p := pay(t, e.sim, "RQ1", PayOptions{Lost: true})
		pay(t, e.sim, "RQ-NONE", PayOptions{Lost: true})
		a := api.call(t, "/secapi/pay/refund", refundKV("RQ1", "RQR1", "100")...)
		b := api.call(t, "/secapi/pay/refund", refundKV("RQ1", "RQR2", "200", "refund_account", RefundAccountUnsettled)...)
		wantOK(t, a)
		wantOK(t, b)
		return ids{p.TransactionID, a.Get("refund_id"), b.Get("refund_id")}
	}
	slowIDs := setup(slow)
	// The fast refunds succeed 5 ms after they are made, whatever the
	// test does meanwhile: move the clock first, so that their success
	// time is known.
	clk.Advance(3 * time.Second)
	fastIDs := setup(fast)
	waitFor(t, "the refunds' success", func() bool {
		r := fast.sim.Refunds()
		return r[0].Status == RefundStatusSuccess && r[1].Status == RefundStatusSuccess
	})

	type want struct {
		outRefundNo, fee, status, account string
	}
	tests := []struct {
		name    string
		e       *tenv
		kv      func(ids) []string
		errCode string
		total   string // total_refund_count, when paged
		refunds []want
	}{
		{name: "by out_refund_no, processing", e: slow, kv: func(ids) []string { return []string{"out_refund_no", "RQR1"} },
			refunds: []want{{"RQR1", "100", RefundStatusProcessing, RefundAccountDefault}}},
		{name: "by out_refund_no, succeeded", e: fast, kv: func(ids) []string { return []string{"out_refund_no", "RQR2"} },
			refunds: []want{{"RQR2", "200", RefundStatusSuccess, RefundAccountUnsettled}}},
		{name: "by refund_id", e: fast, kv: func(i ids) []string { return []string{"refund_id", i.rf1} },
			refunds: []want{{"RQR1", "100", RefundStatusSuccess, RefundAccountDefault}}},
		{name: "refund_id wins", e: fast, kv: func(i ids) []string { return []string{"refund_id", i.rf2, "out_refund_no", "RQR1"} },
			refunds: []want{{"RQR2", "200", RefundStatusSuccess, RefundAccountUnsettled}}},
		{name: "by out_trade_no", e: slow, kv: func(ids) []string { return []string{"out_trade_no", "RQ1"} },
			refunds: []want{{"RQR1", "100", RefundStatusProcessing, RefundAccountDefault}, {"RQR2", "200", RefundStatusProcessing, RefundAccountUnsettled}}},
		{name: "by transaction_id", e: fast, kv: func(i ids) []string { return []string{"transaction_id", i.tx} },
			refunds: []want{{"RQR1", "100", RefundStatusSuccess, RefundAccountDefault}, {"RQR2", "200", RefundStatusSuccess, RefundAccountUnsettled}}},
		{name: "offset", e: fast, kv: func(ids) []string { return []string{"out_trade_no", "RQ1", "offset", "1"} }, total: "2",
			refunds: []want{{"RQR2", "200", RefundStatusSuccess, RefundAccountUnsettled}}},
		{name: "offset past the end", e: fast, kv: func(ids) []string { return []string{"out_trade_no", "RQ1", "offset", "2"} }, errCode: "REFUNDNOTEXIST"},
		{name: "bad offset", e: fast, kv: func(ids) []string { return []string{"out_trade_no", "RQ1", "offset", "-1"} }, errCode: "PARAM_ERROR"},
		{name: "unknown out_refund_no", e: fast, kv: func(ids) []string { return []string{"out_refund_no", "nope"} }, errCode: "REFUNDNOTEXIST"},
		{name: "unknown refund_id", e: fast, kv: func(ids) []string { return []string{"refund_id", "50000000000000000000000000000"} }, errCode: "REFUNDNOTEXIST"},
		{name: "order without refunds", e: fast, kv: func(ids) []string { return []string{"out_trade_no", "RQ-NONE"} }, errCode: "REFUNDNOTEXIST"},
		{name: "unknown order", e: fast, kv: func(ids) []string { return []string{"out_trade_no", "RQ-NOPE"} }, errCode: "REFUNDNOTEXIST"},
		{name: "nothing named", e: fast, kv: func(ids) []string { return nil }, errCode: "LACK_PARAMS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := fastIDs
			if tc.e == slow {
				i = slowIDs
			}
			p := tc.e.merchantAPI(t).with(wxpay.SignTypeHMACSHA256).call(t, "/pay/refundquery", tc.kv(i)...)
			if tc.errCode != "" {
				wantErrCode(t, p, tc.errCode)
				return
			}
			wantOK(t, p)
			head := map[string]string{
				"transaction_id": i.tx, "out_trade_no": "RQ1", "total_fee": "888", "cash_fee": "888",
				"refund_count": strconv.Itoa(len(tc.refunds)), "total_refund_count": tc.total,
			}
			for f, v := range head {
				if p.Get(f) != v {
					t.Errorf("%s = %q, want %q", f, p.Get(f), v)
				}
			}
			for n, w := range tc.refunds {
				idx := "_" + strconv.Itoa(n)
				id := map[string]string{"RQR1": i.rf1, "RQR2": i.rf2}[w.outRefundNo]
				fields := map[string]string{
					"out_refund_no": w.outRefundNo, "refund_id": id, "refund_fee": w.fee, "refund_status": w.status,
					"refund_recv_accout": "支付用户的零钱", "refund_account": w.account, "refund_channel": "ORIGINAL",
				}
				if w.status == RefundStatusSuccess {
					fields["refund_success_time"] = "2024-05-01 12:00:03"
				}
				for f, v := range fields {
					if p.Get(f+idx) != v {
						t.Errorf("%s%s = %q, want %q", f, idx, p.Get(f+idx), v)
					}
				}
				if _, ok := p.Lookup("refund_success_time" + idx); ok && w.status != RefundStatusSuccess {
					t.Errorf("a PROCESSING refund has refund_success_time%s", idx)
				}
			}
			if _, ok := p.Lookup("out_refund_no_" + strconv.Itoa(len(tc.refunds))); ok {
				t.Errorf("more refunds than refund_count: %v", p)
			}
		})
	}
}

// decryptReqInfo decrypts a req_info as a merchant does, written apart from
// the simulator's encryption: base64, AES-256-ECB keyed with the lowercase
// hex MD5 of the API key, PKCS#7 padding checked strictly.
func decryptReqInfo(reqInfo string, key wxpay.APIKey) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(reqInfo)
	if err != nil {
		return nil, err
	}
	k := fmt.Sprintf("%x", md5.Sum([]byte(key)))
	c, err := aes.NewCipher([]byte(k))
	if err != nil {
		return nil, err
	}
	if len(ct) == 0 || len(ct)%16 != 0 {
		return nil, fmt.Errorf("ciphertext of %d bytes", len(ct))
	}
	pt := make([]byte, len(ct))
	for off := 0; off < len(ct); off += 16 {
		c.Decrypt(pt[off:off+16], ct[off:off+16])
	}
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > 16 {
		return nil, errors.New("bad padding")
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, errors.New("bad padding")
		}
	}
	return pt[:len(pt)-pad], nil
}

func TestRefundNotification(t *testing.T) {
	// The first delivery is refused, the second acknowledged.
	ns := newNotifyServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(wxpay.NotifyReplySuccess))
	})
	clk := newClock(t0)
	e := newTLSEnv(t, Config{Now: clk.Now, TimeScale: 0.001})
	api := e.merchantAPI(t)
	api.place(t, "N1", ns.URL())
	p := pay(t, e.sim, "N1", PayOptions{Lost: true})
	clk.Advance(time.Minute)
	answer := api.call(t, "/secapi/pay/refund", refundKV("N1", "NR1", "300", "notify_url", ns.URL()+"/refund")...)
	wantOK(t, answer)
	// Without notify_url there is no refund notification.
	wantOK(t, api.call(t, "/secapi/pay/refund", refundKV("N1", "NR2", "8")...))

	waitFor(t, "two deliveries", func() bool { return ns.count() == 2 })
	waitFor(t, "the acknowledgement", func() bool { return len(e.sim.Notifications()) == 1 && e.sim.Notifications()[0].Acknowledged })
	waitFor(t, "NR2's success", func() bool { return e.sim.Refunds()[1].Status == RefundStatusSuccess })
	time.Sleep(20 * time.Millisecond)
	recs := e.sim.Notifications()
	if len(recs) != 1 {
		t.Fatalf("%d notifications, want NR1's only", len(recs))
	}
	rec := recs[0]
	if rec.Kind != KindRefund || rec.OutRefundNo != "NR1" || rec.OutTradeNo != "N1" || rec.TransactionID != p.TransactionID ||
		rec.URL != ns.URL()+"/refund" || len(rec.Attempts) != 2 || rec.Attempts[0].Acked || !rec.Attempts[1].Acked {
		t.Errorf("record %+v", rec)
	}
	got := ns.received()
	if !bytes.Equal(got[0].body, got[1].body) || !bytes.Equal(got[0].body, rec.Body) {
		t.Error("the retry's body differs")
	}

	outer, err := wxpay.DecodeXML(got[1].body)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(outer))
	for i, f := range outer {
		names[i] = f.Name
	}
	if fmt.Sprint(names) != "[return_code appid mch_id nonce_str req_info]" || outer.Get("return_code") != "SUCCESS" ||
		outer.Get("appid") != appA || outer.Get("mch_id") != testMchID || len(outer.Get("nonce_str")) != 32 {
		t.Errorf("outer document %s", got[1].body)
	}
	// A pay notification's verifier refuses it: it has no sign.
	if _, err := wxpay.VerifyNotification(got[1].body, testKey); err == nil {
		t.Error("a refund notification verifies as a pay notification")
	}

	plain, err := decryptReqInfo(outer.Get("req_info"), testKey)
	if err != nil {
		t.Fatalf("decrypting req_info: %v", err)
	}
	root, err := wxpay.DecodeFlatXML(plain, "root")
	if err != nil {
		t.Fatalf("req_info plaintext: %v: %s", err, plain)
	}
	want := map[string]string{
		"out_refund_no": "NR1", "refund_id": answer.Get("refund_id"), "transaction_id": p.TransactionID, "out_trade_no": "N1",
		"total_fee": "888", "refund_fee": "300", "settlement_total_fee": "888", "settlement_refund_fee": "300",
		"refund_status": "SUCCESS", "success_time": "2024-05-01 12:01:00", "refund_recv_accout": "支付用户的零钱",
		"refund_account": "REFUND_SOURCE_RECHARGE_FUNDS", "refund_request_source": "API",
	}
	if len(root) != len(want) {
		t.Errorf("<root> has %d fields, want %d: %s", len(root), len(want), plain)
	}
	for f, v := range want {
		if root.Get(f) != v {
			t.Errorf("<root> %s = %q, want %q", f, root.Get(f), v)
		}
	}
	// A wrong key shows as a padding error (or garbage), never as the plaintext.
	if pt, err := decryptReqInfo(outer.Get("req_info"), "0123456789abcdef0123456789abcdef"); err == nil && bytes.Equal(pt, plain) {
		t.Error("req_info decrypts with another key")
	}

	t.Run("openssl", func(t *testing.T) {
		path := requireTool(t, "openssl")
		ct, _ := base64.StdEncoding.DecodeString(outer.Get("req_info"))
		key := fmt.Sprintf("%x", md5.Sum([]byte(testKey)))
		cmd := exec.CommandContext(t.Context(), path, "enc", "-d", "-aes-256-ecb", "-nosalt", "-K", fmt.Sprintf("%x", key))
		cmd.Stdin = bytes.NewReader(ct)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		if !bytes.Equal(out, plain) {
			t.Errorf("openssl decrypts to %s, want %s", out, plain)
		}
	})

	// The refund's own state.
	rf := e.sim.Refunds()[0]
	if rf.Status != RefundStatusSuccess || !rf.SuccessAt.Equal(t0.Add(time.Minute)) || rf.NotifyURL != ns.URL()+"/refund" {
		t.Errorf("refund %+v", rf)
	}
}

// TestCloseStopsRefunds checks that Close ends refunds waiting to succeed:
// they stay PROCESSING and nothing is notified.
func TestCloseStopsRefunds(t *testing.T) {
	ns := newNotifyServer(t, nil)
	e := newTLSEnv(t, Config{Now: newClock(t0).Now, TimeScale: 1})
	api := e.merchantAPI(t)
	api.place(t, "CS1", ns.URL())
	pay(t, e.sim, "CS1", PayOptions{Lost: true})
	wantOK(t, api.call(t, "/secapi/pay/refund", refundKV("CS1", "CSR1", "1", "notify_url", ns.URL())...))
	start := time.Now()
	e.sim.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if rf := e.sim.Refunds()[0]; rf.Status != RefundStatusProcessing || !rf.SuccessAt.IsZero() {
		t.Errorf("refund after Close %+v", rf)
	}
	// The API still answers after Close; a new refund just never succeeds.
	wantOK(t, api.call(t, "/secapi/pay/refund", refundKV("CS1", "CSR2", "1")...))
	if ns.count() != 0 || len(e.sim.Notifications()) != 0 {
		t.Error("notified after Close")
	}
}

// requireTool returns the path of the command name, and skips t when it is
// not installed, unless WXPAY_TEST_REQUIRE_TOOLS=1 (set by .ci/run, which
// installs it): then a missing tool fails the test instead of hiding it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("WXPAY_TEST_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is not installed, and WXPAY_TEST_REQUIRE_TOOLS=1", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}
