package wxpaysim

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// billText writes lines as WeChat's bill does: data fields prefixed with a
// backquote, CRLF line ends. Header lines are given as one string.
func billText(lines ...any) []byte {
	var b strings.Builder
	for _, l := range lines {
		switch l := l.(type) {
		case string:
			b.WriteString(l)
		case []string:
			b.WriteString("`" + strings.Join(l, ",`"))
		}
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

func TestDownloadBill(t *testing.T) {
	const otherKey wxpay.APIKey = "0123456789abcdef0123456789abcdef"
	clk := newClock(t0)
	e := newTLSEnv(t, Config{
		Now: clk.Now, TimeScale: 0.001,
		Merchants: []Merchant{
			{MchID: testMchID, Key: testKey, AppIDs: []string{appA}},
			{MchID: otherMchID, Key: otherKey, AppIDs: []string{appA}},
		},
	})
	api := e.merchantAPI(t)
	other := e.api(t, e.pki.clientCert(t, otherMchID))
	other.mchID, other.key = otherMchID, otherKey

	// 2024-05-01: B1 and B2 paid, B1 partly refunded, B-FAIL failed,
	// B-NOTPAY never paid; another merchant's O1 paid.
	for _, no := range []string{"B1", "B2", "B-FAIL", "B-NOTPAY"} {
		api.place(t, no, "https://example.com/wxpay/notify")
	}
	other.place(t, "O1", "https://example.com/wxpay/notify")
	p1 := pay(t, e.sim, "B1", PayOptions{Lost: true})
	if _, err := e.sim.Pay(t.Context(), PayOptions{MchID: otherMchID, OutTradeNo: "O1", Lost: true}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Minute)
	p2 := pay(t, e.sim, "B2", PayOptions{Lost: true})
	clk.Advance(30 * time.Minute)
	pay(t, e.sim, "B-FAIL", PayOptions{Fail: true, Lost: true})
	r := api.call(t, "/secapi/pay/refund", refundKV("B1", "BR1", "100")...)
	wantOK(t, r)
	waitFor(t, "the refund's success", func() bool { return e.sim.Refunds()[0].Status == RefundStatusSuccess })
	// 2024-05-02 09:00: B3 paid.
	clk.Advance(20 * time.Hour)
	api.place(t, "B3", "https://example.com/wxpay/notify")
	pay(t, e.sim, "B3", PayOptions{Lost: true})

	order := func(p *Payment, state string) []string {
		return []string{appA, testMchID, "0", "WEB", p.TransactionID, p.OutTradeNo, testOpenID, "JSAPI", state, "CMC", "CNY"}
	}
	row := func(at string, cols ...[]string) []string {
		out := []string{at}
		for _, c := range cols {
			out = append(out, c...)
		}
		return out
	}
	b1 := row("2024-05-01 12:00:00", order(p1, "SUCCESS"),
		[]string{"8.88", "0.00", "0", "0", "0.00", "0.00", "", "", "test", "支付测试", "0.05000", "0.60%", "8.88", "0.00", ""})
	b2 := row("2024-05-01 12:30:00", order(p2, "SUCCESS"),
		[]string{"8.88", "0.00", "0", "0", "0.00", "0.00", "", "", "test", "支付测试", "0.05000", "0.60%", "8.88", "0.00", ""})
	br1 := row("2024-05-01 13:00:00", order(p1, "REFUND"),
		[]string{"0.00", "0.00", r.Get("refund_id"), "BR1", "1.00", "0.00", "ORIGINAL", "SUCCESS", "test", "支付测试", "-0.01000", "0.60%", "0.00", "1.00", ""})
	all := billText(BillHeader, b1, b2, br1, BillSummaryHeader, []string{"3", "17.76", "1.00", "0.00", "0.09000", "17.76", "1.00"})
	if !strings.HasPrefix(string(all), "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n`2024-05-01 12:00:00,`wxd930ea5d5a258f4f,`10000100,`0,`WEB,`4200") {
		t.Fatalf("the test's bill is off: %s", all)
	}

	// 2024-05-02 09:59:59: the bill of 05-01 is not ready yet.
	clk.Advance(59*time.Minute + 59*time.Second)
	wantBillFail(t, api, []string{"bill_date", "20240501"}, BillMsgCreating, "")
	clk.Advance(time.Second)

	tests := []struct {
		name      string
		c         *rawClient
		kv        []string
		want      []byte // the CSV
		gzip      bool
		failMsg   string
		errorCode string
	}{
		{name: "ALL by default", c: api, kv: []string{"bill_date", "20240501"}, want: all},
		{name: "ALL, HMAC-SHA256", c: api.with(wxpay.SignTypeHMACSHA256), kv: []string{"bill_date", "20240501", "bill_type", "ALL"}, want: all},
		{name: "SUCCESS", c: api, kv: []string{"bill_date", "20240501", "bill_type", "SUCCESS"},
			want: billText(BillHeader, b1, b2, BillSummaryHeader, []string{"2", "17.76", "0.00", "0.00", "0.10000", "17.76", "0.00"})},
		{name: "REFUND", c: api, kv: []string{"bill_date", "20240501", "bill_type", "REFUND"},
			want: billText(BillHeader, br1, BillSummaryHeader, []string{"1", "0.00", "1.00", "0.00", "-0.01000", "0.00", "1.00"})},
		{name: "GZIP", c: api, kv: []string{"bill_date", "20240501", "tar_type", "GZIP"}, want: all, gzip: true},
		{name: "another merchant's bill", c: other, kv: []string{"bill_date", "20240501", "bill_type", "SUCCESS"}},
		{name: "a day without orders", c: api, kv: []string{"bill_date", "20240430"}, failMsg: BillMsgNoBill, errorCode: "20002"},
		{name: "RECHARGE_REFUND", c: api, kv: []string{"bill_date", "20240501", "bill_type", "RECHARGE_REFUND"}, failMsg: BillMsgNoBill, errorCode: "20002"},
		{name: "REFUND of a day without refunds", c: other, kv: []string{"bill_date", "20240501", "bill_type", "REFUND"}, failMsg: BillMsgNoBill, errorCode: "20002"},
		{name: "today", c: api, kv: []string{"bill_date", "20240502"}, failMsg: BillMsgCreating},
		{name: "tomorrow", c: api, kv: []string{"bill_date", "20240503"}, failMsg: BillMsgInvalidDate, errorCode: "20001"},
		{name: "dashes", c: api, kv: []string{"bill_date", "2024-05-01"}, failMsg: BillMsgInvalidDate, errorCode: "20001"},
		{name: "no such day", c: api, kv: []string{"bill_date", "20240231"}, failMsg: BillMsgInvalidDate, errorCode: "20001"},
		{name: "short", c: api, kv: []string{"bill_date", "2024051"}, failMsg: BillMsgInvalidDate, errorCode: "20001"},
		{name: "no bill_date", c: api, kv: nil, failMsg: BillMsgMissingParam, errorCode: "20001"},
		{name: "bad bill_type", c: api, kv: []string{"bill_date", "20240501", "bill_type", "all"}, failMsg: BillMsgInvalidType, errorCode: "20001"},
		{name: "bad tar_type", c: api, kv: []string{"bill_date", "20240501", "tar_type", "ZIP"}, failMsg: BillMsgInvalidTar, errorCode: "20001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.failMsg != "" {
				wantBillFail(t, tc.c, tc.kv, tc.failMsg, tc.errorCode)
				return
			}
			resp, body := tc.c.raw(t, "/pay/downloadbill", tc.kv...)
			ct := resp.Header.Get("Content-Type")
			if tc.gzip {
				if ct == "" || strings.HasPrefix(ct, "text/") {
					t.Errorf("gzip bill's Content-Type %q", ct)
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("not gzip: %v", err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			} else if ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.want == nil { // the other merchant: its own order only
				lines := strings.Split(string(body), "\r\n")
				if len(lines) != 5 || !strings.Contains(lines[1], "`O1,") || strings.Contains(string(body), "`B") || lines[4] != "" {
					t.Errorf("bill %q", body)
				}
				return
			}
			if !bytes.Equal(body, tc.want) {
				t.Errorf("bill\n%s\nwant\n%s", body, tc.want)
			}
		})
	}
}

// wantBillFail checks an unsigned downloadbill failure.
func wantBillFail(t *testing.T, c *rawClient, kv []string, msg, errorCode string) {
	t.Helper()
	resp, body := c.raw(t, "/pay/downloadbill", kv...)
	p := decodeAnswer(t, resp, body, c.key, c.st)
	want := 2
	if errorCode != "" {
		want = 3
	}
	if p.Get("return_code") != "FAIL" || p.Get("return_msg") != msg || p.Get("error_code") != errorCode || len(p) != want {
		t.Errorf("answer %s, want FAIL %q error_code %q", body, msg, errorCode)
	}
}
