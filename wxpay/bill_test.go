package wxpay

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testBill is the start of a trade bill as WeChat's downloadbill page shows
// it: a header line, one line per trade with values prefixed by a
// backquote, then the totals.
const testBill = "\ufeff交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\r\n" +
	"`2014-11-10 16:33:45,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,`085e9858e3ba5186aafcbaed1,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,`0,`0.60%,`0.01,`0.0,`\r\n" +
	"总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n" +
	"`1,`0.01,`0.0,`0.0,`0,`0.01,`0.0\r\n"

func gzipBytes(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// billRefusalDoc is downloadbill's unsigned refusal.
func billRefusalDoc(msg, code string) []byte {
	p := Params{{"return_code", "FAIL"}, {"return_msg", msg}}
	if code != "" {
		p = append(p, Param{"error_code", code})
	}
	return xmlDoc("xml", p)
}

func TestDownloadBill(t *testing.T) {
	tests := []struct {
		name     string
		billType string
		gzipped  bool
		answer   func(t *testing.T) []byte
		want     string // the bill read, gunzipped
		check    func(t *testing.T, err error)
	}{
		{"CSV", BillTypeAll, false, func(*testing.T) []byte { return []byte(testBill) }, testBill, nil},
		{"bill_type empty means ALL", "", false, func(*testing.T) []byte { return []byte(testBill) }, testBill, nil},
		{"refunds", BillTypeRefund, false, func(*testing.T) []byte { return []byte(testBill) }, testBill, nil},
		{"gzip", BillTypeSuccess, true, func(t *testing.T) []byte { return gzipBytes(t, testBill) }, testBill, nil},
		{"shorter than the sniffed bytes", BillTypeAll, false, func(*testing.T) []byte { return []byte("交易时间\r\n") }, "交易时间\r\n", nil},
		{
			name: "No Bill Exist", billType: BillTypeAll,
			answer: func(*testing.T) []byte { return billRefusalDoc("No Bill Exist", "20002") },
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.ReturnCode != "FAIL" || ae.ReturnMsg != "No Bill Exist" || ae.ErrCode != "20002" || ae.Op != "downloadbill" {
					t.Fatalf("err = %v (%T) %+v, want an *APIError No Bill Exist", err, err, ae)
				}
			},
		},
		{
			name: "Bill Creating, gzip asked for", billType: BillTypeAll, gzipped: true,
			answer: func(*testing.T) []byte { return billRefusalDoc("Bill Creating", "") },
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Message() != "Bill Creating" || ae.Code() != ReturnFail {
					t.Fatalf("err = %v (%T), want an *APIError Bill Creating", err, err)
				}
			},
		},
		{
			name: "refusal with declaration and spaces", billType: BillTypeAll,
			answer: func(*testing.T) []byte {
				return append([]byte("\n  <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), billRefusalDoc("invalid bill_date", "20001")...)
			},
			check: func(t *testing.T, err error) {
				var ae *APIError
				if !errors.As(err, &ae) || ae.ReturnMsg != "invalid bill_date" {
					t.Fatalf("err = %v (%T), want an *APIError invalid bill_date", err, err)
				}
			},
		},
		{
			name: "result_code FAIL", billType: BillTypeAll,
			answer: func(*testing.T) []byte {
				return xmlDoc("xml", Params{{"return_code", "SUCCESS"}, {"result_code", "FAIL"}, {"err_code", "20007"}, {"err_code_des", "当前商户号账单API权限已经关闭"}})
			},
			check: wantAPIError("20007"),
		},
		{
			name: "XML that refuses nothing", billType: BillTypeAll,
			answer: func(*testing.T) []byte { return xmlDoc("xml", Params{{"return_code", "SUCCESS"}}) },
			check:  wantResponseError("not a bill"),
		},
		{
			name: "broken XML", billType: BillTypeAll,
			answer: func(*testing.T) []byte { return []byte("<xml><return_code>FAIL") },
			check: func(t *testing.T, err error) {
				var xe *XMLError
				if !errors.As(err, &xe) {
					t.Fatalf("err = %v (%T), want an *XMLError", err, err)
				}
				wantResponseError("xml")(t, err)
			},
		},
		{
			name: "empty answer", billType: BillTypeAll,
			answer: func(*testing.T) []byte { return nil },
			check:  wantResponseError("empty"),
		},
		{
			name: "CSV when gzip was asked for", billType: BillTypeAll, gzipped: true,
			answer: func(*testing.T) []byte { return []byte(testBill) },
			check:  wantResponseError("gzip"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := newAPIFake(t, func(w http.ResponseWriter, _ *http.Request, _ Params) Params {
				w.Header().Set("Content-Type", "text/plain;charset=utf-8")
				w.Write(tt.answer(t))
				return nil
			})
			rc, err := apiClient(srv, SignTypeHMACSHA256).DownloadBill(context.Background(), testAppID, "20141110", tt.billType, tt.gzipped)
			if tt.check != nil {
				if rc != nil {
					rc.Close()
					t.Error("a stream came with the error")
				}
				tt.check(t, err)
			} else {
				if err != nil {
					t.Fatalf("DownloadBill: %v", err)
				}
				var r io.Reader = rc
				if tt.gzipped {
					zr, err := gzip.NewReader(rc)
					if err != nil {
						t.Fatalf("gzip: %v", err)
					}
					r = zr
				}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Errorf("bill =\n%q\nwant\n%q", got, tt.want)
				}
				if err := rc.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				if err := rc.Close(); err != nil {
					t.Errorf("second Close: %v", err)
				}
			}
			sent := fake.last().params
			wantType := tt.billType
			if wantType == "" {
				wantType = BillTypeAll
			}
			if sent.Get("bill_date") != "20141110" || sent.Get("bill_type") != wantType || sent.Get("appid") != testAppID {
				t.Errorf("request %v", sent.Map())
			}
			if tar, ok := sent.Lookup("tar_type"); ok != tt.gzipped || ok && tar != "GZIP" {
				t.Errorf("request tar_type %q (present %v), gzipped %v", tar, ok, tt.gzipped)
			}
		})
	}
}

// TestDownloadBillStreams checks that DownloadBill hands the bill over as
// it arrives instead of reading it whole: the fake sends the start of a
// bill and waits for the test to read it before it sends the rest.
func TestDownloadBillStreams(t *testing.T) {
	const head = "交易时间,公众账号ID,商户号\r\n"
	rest := strings.Repeat("`2014-11-10 16:33:45,`wx2421b1c4370ec43b,`10000100\r\n", 20000) // ~1 MB
	readHead := make(chan struct{})
	_, srv := newAPIFake(t, func(w http.ResponseWriter, _ *http.Request, _ Params) Params {
		w.Write([]byte(head))
		w.(http.Flusher).Flush()
		select {
		case <-readHead:
		case <-time.After(5 * time.Second):
			t.Error("DownloadBill did not return before the whole bill was sent")
			return nil
		}
		io.WriteString(w, rest)
		return nil
	})
	rc, err := apiClient(srv, SignTypeMD5).DownloadBill(context.Background(), testAppID, "20141110", BillTypeAll, false)
	if err != nil {
		t.Fatalf("DownloadBill: %v", err)
	}
	defer rc.Close()
	got := make([]byte, len(head))
	if _, err := io.ReadFull(rc, got); err != nil || string(got) != head {
		t.Fatalf("first bytes %q, %v", got, err)
	}
	close(readHead)
	var b bytes.Buffer
	if _, err := io.Copy(&b, rc); err != nil || b.String() != rest {
		t.Fatalf("rest of the bill: %d bytes, %v", b.Len(), err)
	}
}

func TestDownloadBillValidatesFirst(t *testing.T) {
	fake, srv := newAPIFake(t, func(w http.ResponseWriter, _ *http.Request, _ Params) Params {
		w.Write([]byte(testBill))
		return nil
	})
	c := apiClient(srv, SignTypeMD5)
	tests := []struct {
		appID, date, billType, field string
	}{
		{"", "20141110", BillTypeAll, "app_id"},
		{testAppID, "", BillTypeAll, "bill_date"},
		{testAppID, "2014-11-10", BillTypeAll, "bill_date"},
		{testAppID, "20141310", BillTypeAll, "bill_date"},
		{testAppID, "201411100", BillTypeAll, "bill_date"},
		{testAppID, "141110", BillTypeAll, "bill_date"},
		{testAppID, "20141110", "all", "bill_type"},
		{testAppID, "20141110", "FUNDFLOW", "bill_type"},
	}
	for _, tt := range tests {
		rc, err := c.DownloadBill(context.Background(), tt.appID, tt.date, tt.billType, false)
		var fe *FieldError
		if rc != nil || !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("DownloadBill(%q, %q, %q) = %v, want a *FieldError for %s", tt.appID, tt.date, tt.billType, err, tt.field)
		}
	}
	if len(fake.received()) != 0 {
		t.Error("an invalid request was sent to WeChat")
	}
}

func TestDownloadBillTimeoutBoundsTheStream(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	_, srv := newAPIFake(t, func(w http.ResponseWriter, r *http.Request, _ Params) Params {
		w.Write([]byte(testBill))
		w.(http.Flusher).Flush()
		select { // a bill that never ends
		case <-r.Context().Done():
		case <-done:
		}
		return nil
	})
	c := apiClient(srv, SignTypeMD5)
	c.Timeout = 100 * time.Millisecond
	rc, err := c.DownloadBill(context.Background(), testAppID, "20141110", BillTypeAll, false)
	if err != nil {
		t.Fatalf("DownloadBill: %v", err)
	}
	defer rc.Close()
	start := time.Now()
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("copying a bill past Timeout: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Timeout did not bound the download: %v", d)
	}
}

// A bill that keeps coming takes as long as it takes: Timeout bounds each
// stall of the download, not the whole of it (a busy merchant's bill of
// many MB, or a slow caller, would otherwise be cut off).
func TestDownloadBillTimeoutAllowsASlowStream(t *testing.T) {
	_, srv := newAPIFake(t, func(w http.ResponseWriter, r *http.Request, _ Params) Params {
		for i := range 10 { // 10 parts, 40 ms apart: 400 ms in all
			if i > 0 {
				time.Sleep(40 * time.Millisecond)
			}
			w.Write([]byte(fmt.Sprintf("part %d\n", i)))
			w.(http.Flusher).Flush()
		}
		return nil
	})
	c := apiClient(srv, SignTypeMD5)
	c.Timeout = 200 * time.Millisecond
	rc, err := c.DownloadBill(context.Background(), testAppID, "20141110", BillTypeAll, false)
	if err != nil {
		t.Fatalf("DownloadBill: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || !strings.HasSuffix(string(b), "part 9\n") {
		t.Fatalf("a bill arriving for twice Timeout: %d bytes, %v", len(b), err)
	}
}

func TestSniffXML(t *testing.T) {
	tests := []struct {
		head           string
		isXML, decided bool
	}{
		{"", false, false},
		{"\xef", false, false},
		{"\xef\xbb\xbf", false, false},
		{" \r\n\t", false, false},
		{"<", false, false},
		{"<xm", false, false},
		{"<?", false, false},
		{"<?xm", false, false},
		{"<xml", true, true},
		{"<xml><return_code>", true, true},
		{"<?xml version", true, true},
		{"\ufeff\n<xml>", true, true},
		{"<html>", false, true},
		{"<?php", false, true},
		{"交易时间", false, true},
		{"\x1f\x8b\x08", false, true},
		{"\xef\xbc", false, true}, // not a BOM
	}
	for _, tt := range tests {
		isXML, decided := sniffXML([]byte(tt.head))
		if isXML != tt.isXML || decided != tt.decided {
			t.Errorf("sniffXML(%q) = %v, %v; want %v, %v", tt.head, isXML, decided, tt.isXML, tt.decided)
		}
	}
}
