package wxpay

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

const (
	testAppID      = "wxd930ea5d5a258f4f"
	testOutTradeNo = "20150806125346"
	testTxID       = "1008450740201411110005820873"
)

// paidQueryAnswer is WeChat's answer about a paid order, shaped like the
// example of the orderquery page, with a field this package does not know.
func paidQueryAnswer(req Params) Params {
	return okAnswer(req,
		Param{"device_info", "1000"},
		Param{"openid", "oUpF8uN95-Ptaags6E_roPHg7AG0"},
		Param{"is_subscribe", "Y"},
		Param{"trade_type", "JSAPI"},
		Param{"bank_type", "CMC"},
		Param{"total_fee", "88"},
		Param{"fee_type", "CNY"},
		Param{"cash_fee", "78"},
		Param{"coupon_fee", "10"},
		Param{"transaction_id", testTxID},
		Param{"out_trade_no", req.Get("out_trade_no")},
		Param{"attach", "说明"},
		Param{"time_end", "20141111170043"},
		Param{"trade_state", "SUCCESS"},
		Param{"trade_state_desc", "支付成功"},
		Param{"promotion_detail", `{"promotion_detail":[]}`},
	)
}

func TestQueryOrder(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req Params) Params
		want   OrderQueryResponse // Raw not compared
		paid   bool
	}{
		{
			name:   "paid",
			answer: paidQueryAnswer,
			want: OrderQueryResponse{
				TradeState: "SUCCESS", TradeStateDesc: "支付成功", TransactionID: testTxID, OutTradeNo: testOutTradeNo,
				TradeType: "JSAPI", OpenID: "oUpF8uN95-Ptaags6E_roPHg7AG0", BankType: "CMC", Attach: "说明",
				TimeEnd: "20141111170043", TotalFee: 88, CashFee: 78,
			},
			paid: true,
		},
		{
			name: "refunded",
			answer: func(req Params) Params {
				p := paidQueryAnswer(req)
				p.Set("trade_state", "REFUND")
				p.Set("trade_state_desc", "订单发生过退款，退款详情请查询退款单")
				return p
			},
			want: OrderQueryResponse{
				TradeState: "REFUND", TradeStateDesc: "订单发生过退款，退款详情请查询退款单", TransactionID: testTxID, OutTradeNo: testOutTradeNo,
				TradeType: "JSAPI", OpenID: "oUpF8uN95-Ptaags6E_roPHg7AG0", BankType: "CMC", Attach: "说明",
				TimeEnd: "20141111170043", TotalFee: 88, CashFee: 78,
			},
			paid: true,
		},
		{
			name: "not paid, without amounts",
			answer: func(req Params) Params {
				return okAnswer(req, Param{"out_trade_no", req.Get("out_trade_no")}, Param{"trade_state", "NOTPAY"}, Param{"trade_state_desc", "订单未支付"})
			},
			want: OrderQueryResponse{TradeState: "NOTPAY", TradeStateDesc: "订单未支付", OutTradeNo: testOutTradeNo},
		},
		{
			name: "closed, answer without out_trade_no",
			answer: func(req Params) Params {
				return okAnswer(req, Param{"trade_state", "CLOSED"}, Param{"total_fee", "88"})
			},
			want: OrderQueryResponse{TradeState: "CLOSED", OutTradeNo: testOutTradeNo, TotalFee: 88},
		},
		{
			name: "a trade state WeChat may add",
			answer: func(req Params) Params {
				return okAnswer(req, Param{"trade_state", "ACCEPT"})
			},
			want: OrderQueryResponse{TradeState: "ACCEPT", OutTradeNo: testOutTradeNo},
		},
	}
	for _, st := range []SignType{SignTypeMD5, SignTypeHMACSHA256} {
		for _, tt := range tests {
			t.Run(string(st)+"/"+tt.name, func(t *testing.T) {
				fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return tt.answer(req) })
				got, err := apiClient(srv, st).QueryOrder(context.Background(), testAppID, testOutTradeNo)
				if err != nil {
					t.Fatalf("QueryOrder: %v", err)
				}
				if got.Paid() != tt.paid {
					t.Errorf("Paid() = %v", got.Paid())
				}
				if got.Raw.Get("sign") == "" || got.Raw.Get("trade_state") != tt.want.TradeState {
					t.Errorf("Raw %v", got.Raw)
				}
				if tt.paid && got.Raw.Get("promotion_detail") == "" {
					t.Error("Raw lacks the field the package does not know")
				}
				got.Raw = nil
				if !reflect.DeepEqual(*got, tt.want) {
					t.Errorf("QueryOrder =\n%+v\nwant\n%+v", *got, tt.want)
				}
				sent := fake.last()
				if sent.path != "/pay/orderquery" || sent.params.Get("appid") != testAppID || sent.params.Get("out_trade_no") != testOutTradeNo {
					t.Errorf("request %s %v", sent.path, sent.params.Map())
				}
				if (sent.params.Get("sign_type") == "HMAC-SHA256") != (st == SignTypeHMACSHA256) {
					t.Errorf("request sign_type %q with client SignType %q", sent.params.Get("sign_type"), st)
				}
			})
		}
	}
}

func TestQueryOrderErrors(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req Params) Params
		check  func(t *testing.T, err error)
	}{
		{
			name:   "ORDERNOTEXIST",
			answer: func(req Params) Params { return failAnswer(req, "ORDERNOTEXIST", "订单不存在") },
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code() != "ORDERNOTEXIST" || ae.ResultCode != "FAIL" || ae.Op != "orderquery" || ae.Retryable() {
					t.Fatalf("err = %v (%T), want an *APIError ORDERNOTEXIST", err, err)
				}
			},
		},
		{
			name:   "SYSTEMERROR is returned, not retried",
			answer: func(req Params) Params { return failAnswer(req, "SYSTEMERROR", "系统错误") },
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code() != "SYSTEMERROR" || !ae.Retryable() {
					t.Fatalf("err = %v (%T), want an *APIError SYSTEMERROR", err, err)
				}
			},
		},
		{"paid without transaction_id", func(req Params) Params { p := paidQueryAnswer(req); p.Delete("transaction_id"); return p }, wantResponseError("transaction_id")},
		{"paid without total_fee", func(req Params) Params { p := paidQueryAnswer(req); p.Delete("total_fee"); return p }, wantResponseError("total_fee")},
		{"total_fee in yuan", func(req Params) Params { p := paidQueryAnswer(req); p.Set("total_fee", "0.88"); return p }, wantResponseError("total_fee")},
		{"cash_fee negative", func(req Params) Params { p := paidQueryAnswer(req); p.Set("cash_fee", "-1"); return p }, wantResponseError("cash_fee")},
		{"no trade_state", func(req Params) Params { p := paidQueryAnswer(req); p.Delete("trade_state"); return p }, wantResponseError("trade_state")},
		{"another order", func(req Params) Params { p := paidQueryAnswer(req); p.Set("out_trade_no", "20150806125347"); return p }, wantResponseError("20150806125347")},
		{"another app", func(req Params) Params { p := paidQueryAnswer(req); p.Set("appid", "wx0000000000000000"); return p }, wantResponseError("appid")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return tt.answer(req) })
			got, err := apiClient(srv, SignTypeMD5).QueryOrder(context.Background(), testAppID, testOutTradeNo)
			if got != nil {
				t.Errorf("QueryOrder returned %+v with the error", got)
			}
			tt.check(t, err)
			if n := len(fake.received()); n != 1 {
				t.Errorf("the fake received %d requests, want 1", n)
			}
		})
	}
}

// wantResponseError checks for a *ResponseError whose message names what.
func wantResponseError(what string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var re *ResponseError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), what) {
			t.Fatalf("err = %v (%T), want a *ResponseError about %s", err, err, what)
		}
	}
}

func TestOrderCallsValidateFirst(t *testing.T) {
	tests := []struct {
		name              string
		appID, outTradeNo string
		field             string
	}{
		{"no appid", "", testOutTradeNo, "app_id"},
		{"no out_trade_no", testAppID, "", "out_trade_no"},
		{"out_trade_no 33 characters", testAppID, strings.Repeat("1", 33), "out_trade_no"},
		{"out_trade_no with @", testAppID, "2015@0806", "out_trade_no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return paidQueryAnswer(req) })
			c := apiClient(srv, SignTypeMD5)
			_, qerr := c.QueryOrder(context.Background(), tt.appID, tt.outTradeNo)
			cerr := c.CloseOrder(context.Background(), tt.appID, tt.outTradeNo)
			for _, err := range []error{qerr, cerr} {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("err = %v, want a *FieldError for %s", err, tt.field)
				}
			}
			if n := len(fake.received()); n != 0 {
				t.Errorf("%d invalid requests were sent to WeChat", n)
			}
		})
	}
}

func TestCloseOrder(t *testing.T) {
	tests := []struct {
		name   string
		answer func(req Params) Params
		code   string // the err_code of the *APIError wanted; "" for success
	}{
		{"closed", func(req Params) Params { return okAnswer(req) }, ""},
		{"ORDERPAID", func(req Params) Params { return failAnswer(req, "ORDERPAID", "订单已支付，不能发起关单") }, "ORDERPAID"},
		{"ORDERCLOSED", func(req Params) Params { return failAnswer(req, "ORDERCLOSED", "订单已关闭，无法重复关闭") }, "ORDERCLOSED"},
		{"SYSTEMERROR", func(req Params) Params { return failAnswer(req, "SYSTEMERROR", "系统错误") }, "SYSTEMERROR"},
		{"return_code FAIL", func(req Params) Params { return Params{{"return_code", "FAIL"}, {"return_msg", "签名错误"}} }, ReturnFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return tt.answer(req) })
			err := apiClient(srv, SignTypeHMACSHA256).CloseOrder(context.Background(), testAppID, testOutTradeNo)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("CloseOrder: %v", err)
				}
			} else {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code() != tt.code || ae.Op != "closeorder" {
					t.Fatalf("err = %v (%T), want an *APIError %s", err, err, tt.code)
				}
			}
			rs := fake.received()
			if len(rs) != 1 {
				t.Fatalf("the fake received %d requests, want 1", len(rs))
			}
			if rs[0].path != "/pay/closeorder" || rs[0].params.Get("out_trade_no") != testOutTradeNo || rs[0].params.Get("appid") != testAppID {
				t.Errorf("request %s %v", rs[0].path, rs[0].params.Map())
			}
		})
	}
}
