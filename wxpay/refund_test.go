package wxpay

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

const (
	testOutRefundNo = "R20150806125346"
	testRefundID    = "50000408942018111907145868882"
)

func validRefund() RefundRequest {
	return RefundRequest{
		AppID:       testAppID,
		OutTradeNo:  testOutTradeNo,
		OutRefundNo: testOutRefundNo,
		TotalFee:    88,
		RefundFee:   30,
	}
}

func TestRefundValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*RefundRequest)
	}{
		{"by out_trade_no", func(r *RefundRequest) {}},
		{"by transaction_id", func(r *RefundRequest) { r.OutTradeNo = ""; r.TransactionID = testTxID }},
		{"by both", func(r *RefundRequest) { r.TransactionID = testTxID }},
		{"full refund", func(r *RefundRequest) { r.RefundFee = r.TotalFee }},
		{"out_refund_no 64 characters, every allowed symbol", func(r *RefundRequest) { r.OutRefundNo = "aZ09_-|*@" + strings.Repeat("r", 55) }},
		{"refund_desc 80 bytes of Chinese and ASCII", func(r *RefundRequest) { r.RefundDesc = strings.Repeat("退", 26) + "ab" }},
		{"notify_url", func(r *RefundRequest) { r.NotifyURL = "https://pay.example.com/wxpay/refund" }},
		{"refund_fee_type CNY", func(r *RefundRequest) { r.RefundFeeType = "CNY" }},
		{"refund_account recharge", func(r *RefundRequest) { r.RefundAccount = RefundAccountRecharge }},
		{"refund_account unsettled", func(r *RefundRequest) { r.RefundAccount = RefundAccountUnsettled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRefund()
			tt.mutate(&r)
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate(%+v) = %v", r, err)
			}
		})
	}
}

func TestRefundValidateRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*RefundRequest)
		field  string
	}{
		{"appid missing", func(r *RefundRequest) { r.AppID = "" }, "app_id"},
		{"no order", func(r *RefundRequest) { r.OutTradeNo = "" }, "out_trade_no"},
		{"out_trade_no with @", func(r *RefundRequest) { r.OutTradeNo = "2015@0806" }, "out_trade_no"},
		{"out_trade_no 33 characters", func(r *RefundRequest) { r.OutTradeNo = strings.Repeat("1", 33) }, "out_trade_no"},
		{"transaction_id 33 characters", func(r *RefundRequest) { r.TransactionID = strings.Repeat("1", 33) }, "transaction_id"},
		{"transaction_id with -", func(r *RefundRequest) { r.OutTradeNo = ""; r.TransactionID = "1008-4507" }, "transaction_id"},
		{"out_refund_no missing", func(r *RefundRequest) { r.OutRefundNo = "" }, "out_refund_no"},
		{"out_refund_no 65 characters", func(r *RefundRequest) { r.OutRefundNo = strings.Repeat("r", 65) }, "out_refund_no"},
		{"out_refund_no with #", func(r *RefundRequest) { r.OutRefundNo = "R#1" }, "out_refund_no"},
		{"out_refund_no with a space", func(r *RefundRequest) { r.OutRefundNo = "R 1" }, "out_refund_no"},
		{"out_refund_no Chinese", func(r *RefundRequest) { r.OutRefundNo = "退款1" }, "out_refund_no"},
		{"total_fee 0", func(r *RefundRequest) { r.TotalFee = 0 }, "total_fee"},
		{"total_fee negative", func(r *RefundRequest) { r.TotalFee = -88 }, "total_fee"},
		{"refund_fee 0", func(r *RefundRequest) { r.RefundFee = 0 }, "refund_fee"},
		{"refund_fee negative", func(r *RefundRequest) { r.RefundFee = -1 }, "refund_fee"},
		{"refund_fee above total_fee", func(r *RefundRequest) { r.RefundFee = 89 }, "refund_fee"},
		// 27 characters, but 81 bytes of UTF-8.
		{"refund_desc 81 bytes of Chinese", func(r *RefundRequest) { r.RefundDesc = strings.Repeat("退", 27) }, "refund_desc"},
		{"notify_url with query", func(r *RefundRequest) { r.NotifyURL = "https://pay.example.com/wxpay/refund?id=1" }, "notify_url"},
		{"notify_url relative", func(r *RefundRequest) { r.NotifyURL = "/wxpay/refund" }, "notify_url"},
		{"notify_url ftp", func(r *RefundRequest) { r.NotifyURL = "ftp://pay.example.com/refund" }, "notify_url"},
		{"refund_fee_type lowercase", func(r *RefundRequest) { r.RefundFeeType = "cny" }, "refund_fee_type"},
		{"refund_fee_type 9 bytes", func(r *RefundRequest) { r.RefundFeeType = "CNYCNYCNY" }, "refund_fee_type"},
		{"refund_account unknown", func(r *RefundRequest) { r.RefundAccount = "BALANCE" }, "refund_account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRefund()
			tt.mutate(&r)
			err := r.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v (%T), want a *FieldError", err, err)
			}
			if fe.Field != tt.field || !strings.HasPrefix(err.Error(), tt.field+": ") || fe.Reason == "" {
				t.Fatalf("Validate = %v: names %q, want %q", err, fe.Field, tt.field)
			}
		})
	}
}

func TestRefundParams(t *testing.T) {
	r := validRefund()
	r.TransactionID = testTxID
	r.RefundDesc = "商品已售完"
	r.NotifyURL = "https://pay.example.com/wxpay/refund"
	r.RefundFeeType = "CNY"
	r.RefundAccount = RefundAccountRecharge
	want := Params{
		{"appid", testAppID},
		{"transaction_id", testTxID},
		{"out_trade_no", testOutTradeNo},
		{"out_refund_no", testOutRefundNo},
		{"total_fee", "88"},
		{"refund_fee", "30"},
		{"refund_fee_type", "CNY"},
		{"refund_desc", "商品已售完"},
		{"refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"},
		{"notify_url", "https://pay.example.com/wxpay/refund"},
	}
	if got := r.Params(); !reflect.DeepEqual(got, want) {
		t.Errorf("Params =\n%q\nwant\n%q", got, want)
	}
	r = validRefund()
	for _, f := range r.Params() {
		if f.Value == "" {
			t.Errorf("Params has the empty field %s", f.Name)
		}
	}
}

// refundAnswer is WeChat's answer to a refund it accepted, shaped like the
// example of the refund page.
func refundAnswer(req Params) Params {
	return okAnswer(req,
		Param{"transaction_id", testTxID},
		Param{"out_trade_no", req.Get("out_trade_no")},
		Param{"out_refund_no", req.Get("out_refund_no")},
		Param{"refund_id", testRefundID},
		Param{"refund_channel", ""},
		Param{"refund_fee", req.Get("refund_fee")},
		Param{"coupon_refund_fee", "0"},
		Param{"total_fee", req.Get("total_fee")},
		Param{"cash_fee", req.Get("total_fee")},
		Param{"cash_refund_fee", req.Get("refund_fee")},
	)
}

func TestRefundOverMutualTLS(t *testing.T) {
	pki := newTestPKI(t, "WeChat")
	other := newTestPKI(t, "Other")
	fake, srv := newMTLSFake(t, pki, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return refundAnswer(req) })

	tests := []struct {
		name  string
		hc    *http.Client // TLSHTTPClient
		check func(t *testing.T, resp *RefundResponse, err error)
		sent  bool // whether the fake should see the request
	}{
		{
			name: "no TLSHTTPClient",
			hc:   nil,
			check: func(t *testing.T, resp *RefundResponse, err error) {
				if !errors.Is(err, ErrNoClientCertificate) || !strings.Contains(err.Error(), "TLSHTTPClient") || !strings.HasPrefix(err.Error(), "wxpay refund: ") {
					t.Fatalf("err = %v, want ErrNoClientCertificate naming TLSHTTPClient", err)
				}
			},
		},
		{
			name: "no client certificate",
			hc:   trusting(NewHTTPClient(2), pki),
			check: func(t *testing.T, resp *RefundResponse, err error) {
				var te *TransportError
				if !errors.As(err, &te) || te.StatusCode != 0 || !strings.Contains(err.Error(), "certificate required") {
					t.Fatalf("err = %v (%T), want a *TransportError: the server requires a certificate", err, err)
				}
			},
		},
		{
			name: "a client certificate of another CA",
			hc:   trusting(NewMTLSHTTPClient(other.client, 2), pki),
			check: func(t *testing.T, resp *RefundResponse, err error) {
				var te *TransportError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), "unknown certificate authority") {
					t.Fatalf("err = %v (%T), want a *TransportError: the server does not know the CA", err, err)
				}
			},
		},
		{
			name: "the merchant's client certificate",
			hc:   trusting(NewMTLSHTTPClient(pki.client, 2), pki),
			check: func(t *testing.T, resp *RefundResponse, err error) {
				if err != nil {
					t.Fatalf("Refund: %v", err)
				}
				want := RefundResponse{
					RefundID: testRefundID, OutRefundNo: testOutRefundNo, TransactionID: testTxID, OutTradeNo: testOutTradeNo,
					RefundFee: 30, TotalFee: 88, CashFee: 88,
				}
				if resp.Raw.Get("cash_refund_fee") != "30" {
					t.Errorf("Raw %v", resp.Raw.Map())
				}
				resp.Raw = nil
				if !reflect.DeepEqual(*resp, want) {
					t.Errorf("Refund =\n%+v\nwant\n%+v", *resp, want)
				}
			},
			sent: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fake.received())
			c := &Client{MchID: "10000100", Key: officialKey, Endpoint: srv.URL, TLSHTTPClient: tt.hc}
			if tt.hc != nil {
				t.Cleanup(tt.hc.CloseIdleConnections)
			}
			r := validRefund()
			resp, err := c.Refund(context.Background(), &r)
			if err != nil && resp != nil {
				t.Errorf("Refund returned %+v with the error", resp)
			}
			tt.check(t, resp, err)
			rs := fake.received()[before:]
			if !tt.sent {
				if len(rs) != 0 {
					t.Fatalf("the fake received %d requests", len(rs))
				}
				return
			}
			if len(rs) != 1 {
				t.Fatalf("the fake received %d requests, want 1", len(rs))
			}
			if rs[0].path != "/secapi/pay/refund" || rs[0].peer != "10000100" {
				t.Errorf("request %s from client certificate %q", rs[0].path, rs[0].peer)
			}
			for _, f := range r.Params() {
				if rs[0].params.Get(f.Name) != f.Value {
					t.Errorf("request %s = %q, want %q", f.Name, rs[0].params.Get(f.Name), f.Value)
				}
			}
		})
	}
}

func TestRefundAnswers(t *testing.T) {
	tests := []struct {
		name     string
		answers  []func(req Params) Params // one per request, the last repeated
		requests int                       // how many the fake should see
		check    func(t *testing.T, err error)
	}{
		{
			name:     "accepted",
			answers:  []func(Params) Params{refundAnswer},
			requests: 1,
			check:    wantNoError,
		},
		{
			name: "SYSTEMERROR, then accepted",
			answers: []func(Params) Params{
				func(req Params) Params { return failAnswer(req, "SYSTEMERROR", "系统超时") },
				refundAnswer,
			},
			requests: 2,
			check:    wantNoError,
		},
		{
			name:     "SYSTEMERROR twice",
			answers:  []func(Params) Params{func(req Params) Params { return failAnswer(req, "SYSTEMERROR", "系统超时") }},
			requests: 2,
			check:    wantAPIError("SYSTEMERROR"),
		},
		{
			// The repeat's refusal says nothing of the first attempt, which
			// WeChat may have carried out: the outcome stays unknown, as
			// the first attempt's SYSTEMERROR says.
			name: "SYSTEMERROR, then refused",
			answers: []func(Params) Params{
				func(req Params) Params { return failAnswer(req, "SYSTEMERROR", "系统超时") },
				func(req Params) Params { return failAnswer(req, "FREQUENCY_LIMITED", "频率限制") },
			},
			requests: 2,
			check: func(t *testing.T, err error) {
				t.Helper()
				var re *RepeatError
				wantAPIError("SYSTEMERROR")(t, err)
				if !errors.As(err, &re) || !strings.Contains(err.Error(), "FREQUENCY_LIMITED") {
					t.Fatalf("err = %v, want a *RepeatError naming both answers", err)
				}
			},
		},
		{
			name:     "NOTENOUGH is not retried",
			answers:  []func(Params) Params{func(req Params) Params { return failAnswer(req, "NOTENOUGH", "基本账户余额不足") }},
			requests: 1,
			check:    wantAPIError("NOTENOUGH"),
		},
		{
			name:     "another refund's answer",
			answers:  []func(Params) Params{func(req Params) Params { p := refundAnswer(req); p.Set("out_refund_no", "R2"); return p }},
			requests: 1,
			check:    wantResponseError("out_refund_no"),
		},
		{
			name:     "another order's answer",
			answers:  []func(Params) Params{func(req Params) Params { p := refundAnswer(req); p.Set("out_trade_no", "1"); return p }},
			requests: 1,
			check:    wantResponseError("out_trade_no"),
		},
		{
			name:     "no refund_id",
			answers:  []func(Params) Params{func(req Params) Params { p := refundAnswer(req); p.Delete("refund_id"); return p }},
			requests: 1,
			check:    wantResponseError("refund_id"),
		},
		{
			name:     "another amount",
			answers:  []func(Params) Params{func(req Params) Params { p := refundAnswer(req); p.Set("refund_fee", "88"); return p }},
			requests: 1,
			check:    wantResponseError("88 fen"),
		},
		{
			name:     "refund_fee malformed",
			answers:  []func(Params) Params{func(req Params) Params { p := refundAnswer(req); p.Set("refund_fee", "030"); return p }},
			requests: 1,
			check:    wantResponseError("refund_fee"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32 // requests answered
			fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
				a := tt.answers[min(int(n.Add(1))-1, len(tt.answers)-1)]
				return a(req)
			})
			r := validRefund()
			_, err := apiClient(srv, SignTypeHMACSHA256).Refund(context.Background(), &r)
			tt.check(t, err)
			rs := fake.received()
			if len(rs) != tt.requests {
				t.Fatalf("the fake received %d requests, want %d", len(rs), tt.requests)
			}
			// A retry sends the very same request: same nonce_str, same sign.
			for _, req := range rs[1:] {
				if req.body != rs[0].body {
					t.Errorf("retry sent\n%s\nfirst request\n%s", req.body, rs[0].body)
				}
			}
		})
	}
}

func TestRefundValidatesFirst(t *testing.T) {
	fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return refundAnswer(req) })
	r := validRefund()
	r.RefundFee = 100
	_, err := apiClient(srv, SignTypeMD5).Refund(context.Background(), &r)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "refund_fee" {
		t.Fatalf("err = %v, want a *FieldError for refund_fee", err)
	}
	if len(fake.received()) != 0 {
		t.Error("an invalid refund was sent to WeChat")
	}
}

func wantNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("err = %v", err)
	}
}

func wantAPIError(code string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code() != code {
			t.Fatalf("err = %v (%T), want an *APIError %s", err, err, code)
		}
	}
}

// refundQueryAnswer is WeChat's answer to a refundquery, shaped like the
// example of the refundquery page: two refunds of one order, the second the
// one asked for, with coupon fields this package does not read. The order
// used a 5 fen non-cash coupon (settlement_total_fee) and the second
// refund gives it back (settlement_refund_fee_1); the first names its
// funds (refund_account_0) and no settlement amount.
func refundQueryAnswer(req Params) Params {
	return okAnswer(req,
		Param{"transaction_id", testTxID},
		Param{"out_trade_no", testOutTradeNo},
		Param{"total_fee", "88"},
		Param{"settlement_total_fee", "83"},
		Param{"cash_fee", "83"},
		Param{"refund_count", "2"},
		Param{"out_refund_no_0", "R20150806125345"},
		Param{"refund_id_0", "50000408942018111907145868881"},
		Param{"refund_channel_0", "ORIGINAL"},
		Param{"refund_fee_0", "10"},
		Param{"refund_status_0", "SUCCESS"},
		Param{"refund_success_time_0", "2018-11-19 16:24:13"},
		Param{"refund_recv_accout_0", "支付用户的零钱"},
		Param{"refund_account_0", "REFUND_SOURCE_UNSETTLED_FUNDS"},
		Param{"out_refund_no_1", req.Get("out_refund_no")},
		Param{"refund_id_1", testRefundID},
		Param{"refund_fee_1", "30"},
		Param{"settlement_refund_fee_1", "25"},
		Param{"coupon_refund_count_1", "1"},
		Param{"coupon_refund_fee_1_0", "5"},
		Param{"refund_status_1", "PROCESSING"},
		Param{"refund_recv_accout_1", "招商银行信用卡0403"},
	)
}

// An amount WeChat sends empty is taken as absent, not as an answer that
// does not parse.
func TestQueryRefundEmptySettlementAmount(t *testing.T) {
	_, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
		p := refundQueryAnswer(req)
		p.Set("settlement_total_fee", "")
		p.Set("settlement_refund_fee_1", "")
		return p
	})
	got, err := apiClient(srv, SignTypeMD5).QueryRefund(context.Background(), testAppID, testOutRefundNo)
	if err != nil || got.SettlementTotalFee != nil || got.Refunds[1].SettlementRefundFee != nil {
		t.Fatalf("refund query with empty settlement amounts: %+v, %v", got, err)
	}
}

func TestQueryRefund(t *testing.T) {
	fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return refundQueryAnswer(req) })
	got, err := apiClient(srv, SignTypeMD5).QueryRefund(context.Background(), testAppID, testOutRefundNo)
	if err != nil {
		t.Fatalf("QueryRefund: %v", err)
	}
	amount := func(n int64) *int64 { return &n }
	want := RefundQueryResponse{
		OutTradeNo: testOutTradeNo, TransactionID: testTxID, TotalFee: 88, SettlementTotalFee: amount(83),
		Refunds: []RefundStatus{
			{OutRefundNo: "R20150806125345", RefundID: "50000408942018111907145868881", RefundStatus: RefundStatusSuccess, SuccessTime: "2018-11-19 16:24:13", RecvAccount: "支付用户的零钱", RefundFee: 10,
				RefundAccount: "REFUND_SOURCE_UNSETTLED_FUNDS"},
			{OutRefundNo: testOutRefundNo, RefundID: testRefundID, RefundStatus: RefundStatusProcessing, RecvAccount: "招商银行信用卡0403", RefundFee: 30,
				SettlementRefundFee: amount(25)},
		},
	}
	if got.Raw.Get("coupon_refund_fee_1_0") != "5" {
		t.Errorf("Raw %v", got.Raw.Map())
	}
	got.Raw = nil
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("QueryRefund =\n%+v\nwant\n%+v", *got, want)
	}
	sent := fake.last()
	if sent.path != "/pay/refundquery" || sent.params.Get("out_refund_no") != testOutRefundNo || sent.params.Get("appid") != testAppID {
		t.Errorf("request %s %v", sent.path, sent.params.Map())
	}
}

func TestQueryRefundErrors(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req Params) Params
		check  func(t *testing.T, err error)
	}{
		{"REFUNDNOTEXIST", func(req Params) Params { return failAnswer(req, "REFUNDNOTEXIST", "退款订单查询失败") }, wantAPIError("REFUNDNOTEXIST")},
		{"no refund_count", func(req Params) Params { p := refundQueryAnswer(req); p.Delete("refund_count"); return p }, wantResponseError("refund_count")},
		{"refund_count not a number", func(req Params) Params { p := refundQueryAnswer(req); p.Set("refund_count", "two"); return p }, wantResponseError("refund_count")},
		{"refund_count beyond the fields", func(req Params) Params { p := refundQueryAnswer(req); p.Set("refund_count", "3"); return p }, wantResponseError("_2")},
		{"refund_count absurd", func(req Params) Params { p := refundQueryAnswer(req); p.Set("refund_count", "1000000000"); return p }, wantResponseError("refund_count")},
		{"no refund_status_1", func(req Params) Params { p := refundQueryAnswer(req); p.Delete("refund_status_1"); return p }, wantResponseError("refund_status_1")},
		{"refund_fee_0 in yuan", func(req Params) Params { p := refundQueryAnswer(req); p.Set("refund_fee_0", "0.10"); return p }, wantResponseError("refund_fee_0")},
		{"total_fee malformed", func(req Params) Params { p := refundQueryAnswer(req); p.Set("total_fee", "+88"); return p }, wantResponseError("total_fee")},
		{"the refund asked for is not listed", func(req Params) Params {
			p := refundQueryAnswer(req)
			p.Set("out_refund_no_1", "R0")
			return p
		}, wantResponseError(testOutRefundNo)},
		{"another app", func(req Params) Params { p := refundQueryAnswer(req); p.Set("appid", "wx0000000000000000"); return p }, wantResponseError("appid")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return tt.answer(req) })
			got, err := apiClient(srv, SignTypeMD5).QueryRefund(context.Background(), testAppID, testOutRefundNo)
			if got != nil {
				t.Errorf("QueryRefund returned %+v with the error", got)
			}
			tt.check(t, err)
		})
	}
}

func TestQueryRefundValidatesFirst(t *testing.T) {
	fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return refundQueryAnswer(req) })
	c := apiClient(srv, SignTypeMD5)
	for _, tt := range []struct{ appID, outRefundNo, field string }{
		{"", testOutRefundNo, "app_id"},
		{testAppID, "", "out_refund_no"},
		{testAppID, "R#1", "out_refund_no"},
	} {
		_, err := c.QueryRefund(context.Background(), tt.appID, tt.outRefundNo)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("QueryRefund(%q, %q) = %v, want a *FieldError for %s", tt.appID, tt.outRefundNo, err, tt.field)
		}
	}
	if len(fake.received()) != 0 {
		t.Error("an invalid query was sent to WeChat")
	}
}

// Merchant numbers: order numbers are 1–32 of [0-9A-Za-z_-|*], refund
// numbers 1–64 of the same and '@' (WeChat's field tables).
func TestValidateMerchantNumbers(t *testing.T) {
	tests := []struct {
		name     string
		validate func(field, v string) error
		v        string
		ok       bool
	}{
		{"order 32", ValidateOutTradeNo, "aZ09_-|*" + strings.Repeat("x", 24), true},
		{"order 33", ValidateOutTradeNo, strings.Repeat("x", 33), false},
		{"order empty", ValidateOutTradeNo, "", false},
		{"order @", ValidateOutTradeNo, "a@b", false},
		{"order space", ValidateOutTradeNo, "a b", false},
		{"order Chinese", ValidateOutTradeNo, "订单1", false},
		{"refund 64 with @", ValidateOutRefundNo, "aZ09_-|*@" + strings.Repeat("r", 55), true},
		{"refund 65", ValidateOutRefundNo, strings.Repeat("r", 65), false},
		{"refund empty", ValidateOutRefundNo, "", false},
		{"refund dot", ValidateOutRefundNo, "r.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.validate("the_field", tt.v)
			if (err == nil) != tt.ok {
				t.Fatalf("%q: %v, want ok=%v", tt.v, err, tt.ok)
			}
			var fe *FieldError
			if err != nil && (!errors.As(err, &fe) || fe.Field != "the_field") {
				t.Fatalf("%q: error %v does not name the field", tt.v, err)
			}
		})
	}
}
