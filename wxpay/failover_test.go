package wxpay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDefaultFailoverEndpoint(t *testing.T) {
	tests := []struct{ endpoint, want string }{
		{"", "https://api2.mch.weixin.qq.com"},
		{"https://api.mch.weixin.qq.com", "https://api2.mch.weixin.qq.com"},
		{"https://api.mch.weixin.qq.com/", "https://api2.mch.weixin.qq.com"},
		{DefaultEndpoint, DisasterRecoveryEndpoint},
		{"https://api2.mch.weixin.qq.com", ""},
		{"https://apihk.mch.weixin.qq.com", ""},
		{"http://api.mch.weixin.qq.com", ""},
		{"http://127.0.0.1:8080", ""},
		{"https://wxpaysim.internal", ""},
	}
	for _, tt := range tests {
		if got := DefaultFailoverEndpoint(tt.endpoint); got != tt.want {
			t.Errorf("DefaultFailoverEndpoint(%q) = %q, want %q", tt.endpoint, got, tt.want)
		}
	}
}

// healthyAnswer answers every endpoint like WeChat on a good day.
func healthyAnswer(w http.ResponseWriter, r *http.Request, req Params) Params {
	switch r.URL.Path {
	case "/pay/orderquery":
		return paidQueryAnswer(req)
	case "/pay/closeorder":
		return okAnswer(req)
	case "/secapi/pay/refund":
		return refundAnswer(req)
	case "/pay/refundquery":
		return refundQueryAnswer(req)
	case "/pay/unifiedorder":
		return prepayAnswer(req)
	case "/pay/downloadbill":
		w.Write([]byte(testBill))
		return nil
	}
	return Params{{"return_code", "FAIL"}, {"return_msg", "unknown path " + r.URL.Path}}
}

// Ways the first host fails.
func closeConnection(w http.ResponseWriter, _ *http.Request, _ Params) Params {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	return nil
}

func status(code int) func(http.ResponseWriter, *http.Request, Params) Params {
	return func(w http.ResponseWriter, _ *http.Request, _ Params) Params {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		io.WriteString(w, "<html><body>"+http.StatusText(code)+"</body></html>")
		return nil
	}
}

// hang answers nothing until the client goes away or the test ends.
func hang(done <-chan struct{}) func(http.ResponseWriter, *http.Request, Params) Params {
	return func(_ http.ResponseWriter, r *http.Request, _ Params) Params {
		select {
		case <-r.Context().Done():
		case <-done:
		}
		return nil
	}
}

// failoverOp is a call of the Client, made against the hosts of a test.
type failoverOp struct {
	name       string
	repeatable bool
	call       func(ctx context.Context, c *Client) error
}

var failoverOps = []failoverOp{
	{"orderquery", true, func(ctx context.Context, c *Client) error {
		_, err := c.QueryOrder(ctx, testAppID, testOutTradeNo)
		return err
	}},
	{"closeorder", true, func(ctx context.Context, c *Client) error {
		return c.CloseOrder(ctx, testAppID, testOutTradeNo)
	}},
	{"refund", true, func(ctx context.Context, c *Client) error {
		r := validRefund()
		_, err := c.Refund(ctx, &r)
		return err
	}},
	{"refundquery", true, func(ctx context.Context, c *Client) error {
		_, err := c.QueryRefund(ctx, testAppID, testOutRefundNo)
		return err
	}},
	{"downloadbill", true, func(ctx context.Context, c *Client) error {
		rc, err := c.DownloadBill(ctx, testAppID, "20141110", BillTypeAll, false)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err == nil && string(b) != testBill {
			err = errors.New("the bill read is not the bill sent")
		}
		return err
	}},
	{"unifiedorder", false, func(ctx context.Context, c *Client) error {
		r := validOrder(TradeTypeJSAPI)
		_, err := c.UnifiedOrder(ctx, &r)
		return err
	}},
	{"Call", false, func(ctx context.Context, c *Client) error {
		_, err := c.Call(ctx, "orderquery", "/pay/orderquery", Params{{"appid", testAppID}, {"out_trade_no", testOutTradeNo}})
		return err
	}},
}

// failovers records the calls of OnFailover.
type failovers struct {
	mu    sync.Mutex
	ops   []string
	errs  []error
	calls int
}

func (f *failovers) record(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, op)
	f.errs = append(f.errs, err)
	f.calls++
}

// twoHosts starts a first host that answers with first and a healthy
// twin, and a Client of both.
func twoHosts(t *testing.T, first func(http.ResponseWriter, *http.Request, Params) Params) (primary, twin *apiFake, c *Client, fo *failovers) {
	primary, srv1 := newAPIFake(t, first)
	twin, srv2 := newAPIFake(t, healthyAnswer)
	c = apiClient(srv1, SignTypeHMACSHA256)
	c.FailoverEndpoint = srv2.URL + "/"
	fo = &failovers{}
	c.OnFailover = fo.record
	return primary, twin, c, fo
}

func TestFailover(t *testing.T) {
	firsts := []struct {
		name  string
		first func(http.ResponseWriter, *http.Request, Params) Params
		check func(t *testing.T, err error) // the error of the first try
	}{
		{"connection closed", closeConnection, func(t *testing.T, err error) {
			var te *TransportError
			if !errors.As(err, &te) || te.StatusCode != 0 {
				t.Errorf("OnFailover got %v (%T), want a *TransportError without status", err, err)
			}
		}},
		{"HTTP 502", status(http.StatusBadGateway), func(t *testing.T, err error) {
			var te *TransportError
			if !errors.As(err, &te) || te.StatusCode != http.StatusBadGateway {
				t.Errorf("OnFailover got %v (%T), want a *TransportError 502", err, err)
			}
		}},
		{"HTTP 503", status(http.StatusServiceUnavailable), func(t *testing.T, err error) {
			var te *TransportError
			if !errors.As(err, &te) || te.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("OnFailover got %v (%T), want a *TransportError 503", err, err)
			}
		}},
	}
	for _, first := range firsts {
		for _, op := range failoverOps {
			t.Run(first.name+"/"+op.name, func(t *testing.T) {
				primary, twin, c, fo := twoHosts(t, first.first)
				err := op.call(context.Background(), c)
				p, s := primary.received(), twin.received()
				if len(p) != 1 {
					t.Fatalf("the first host received %d requests, want 1", len(p))
				}
				if !op.repeatable {
					if err == nil {
						t.Fatal("the call succeeded")
					}
					var te *TransportError
					if !errors.As(err, &te) {
						t.Errorf("err = %v (%T), want the first host's *TransportError", err, err)
					}
					if len(s) != 0 || fo.calls != 0 {
						t.Fatalf("%s was repeated on the twin (%d requests, %d OnFailover)", op.name, len(s), fo.calls)
					}
					return
				}
				if err != nil {
					t.Fatalf("%s: %v", op.name, err)
				}
				if len(s) != 1 {
					t.Fatalf("the twin received %d requests, want 1", len(s))
				}
				// The very same request: same nonce_str, same sign.
				if s[0].body != p[0].body || s[0].path != p[0].path {
					t.Errorf("the twin received\n%s %s\nthe first host\n%s %s", s[0].path, s[0].body, p[0].path, p[0].body)
				}
				if fo.calls != 1 || fo.ops[0] != op.name {
					t.Fatalf("OnFailover called %d times with %v, want once with %s", fo.calls, fo.ops, op.name)
				}
				first.check(t, fo.errs[0])
			})
		}
	}
}

func TestFailoverWhenNot(t *testing.T) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	query := failoverOps[0].call
	tests := []struct {
		name    string
		first   func(http.ResponseWriter, *http.Request, Params) Params
		setup   func(c *Client)
		ctx     func() (context.Context, context.CancelFunc)
		call    func(ctx context.Context, c *Client) error
		twin    int // requests the twin should see
		calls   int // of OnFailover
		wantErr func(t *testing.T, err error)
	}{
		{
			name:  "HTTP 400",
			first: status(http.StatusBadRequest),
			wantErr: func(t *testing.T, err error) {
				var te *TransportError
				if !errors.As(err, &te) || te.StatusCode != http.StatusBadRequest {
					t.Fatalf("err = %v (%T), want a *TransportError 400", err, err)
				}
			},
		},
		{
			name:  "the caller's deadline",
			first: hang(done),
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			},
			wantErr: func(t *testing.T, err error) {
				if !IsTimeout(err) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v (%T), want the caller's deadline", err, err)
				}
			},
		},
		{
			name:  "the caller's cancellation",
			first: hang(done),
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantErr: func(t *testing.T, err error) {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v (%T), want the caller's cancellation", err, err)
				}
			},
		},
		{
			name:  "the Client's own Timeout fails over",
			first: hang(done),
			setup: func(c *Client) { c.Timeout = 100 * time.Millisecond },
			twin:  1, calls: 1,
			wantErr: func(t *testing.T, err error) {
				if err != nil {
					t.Fatalf("err = %v, want the twin's answer", err)
				}
			},
		},
		{
			name:  "no FailoverEndpoint",
			first: status(http.StatusBadGateway),
			setup: func(c *Client) { c.FailoverEndpoint = "" },
			wantErr: func(t *testing.T, err error) {
				var te *TransportError
				if !errors.As(err, &te) || te.StatusCode != http.StatusBadGateway {
					t.Fatalf("err = %v (%T), want a *TransportError 502", err, err)
				}
			},
		},
		{
			name: "an answer that does not verify",
			first: func(w http.ResponseWriter, _ *http.Request, req Params) Params {
				w.Write(xmlDoc("xml", append(paidQueryAnswer(req), Param{"sign", "0123456789ABCDEF0123456789ABCDEF"})))
				return nil
			},
			wantErr: func(t *testing.T, err error) {
				var re *ResponseError
				if !errors.As(err, &re) || !errors.Is(err, ErrInvalidSignature) {
					t.Fatalf("err = %v (%T), want a *ResponseError wrapping ErrInvalidSignature", err, err)
				}
			},
		},
		{
			name: "return_code FAIL",
			first: func(_ http.ResponseWriter, _ *http.Request, _ Params) Params {
				return Params{{"return_code", "FAIL"}, {"return_msg", "签名错误"}}
			},
			wantErr: wantAPIError(ReturnFail),
		},
		{
			name: "SYSTEMERROR of a query",
			first: func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
				return failAnswer(req, "SYSTEMERROR", "系统错误")
			},
			wantErr: wantAPIError("SYSTEMERROR"),
		},
		{
			name:  "both hosts fail",
			first: status(http.StatusBadGateway),
			setup: func(c *Client) {
				twin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
				t.Cleanup(twin.Close)
				c.FailoverEndpoint = twin.URL
			},
			calls: 1,
			wantErr: func(t *testing.T, err error) {
				var te *TransportError
				if !errors.As(err, &te) || te.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("err = %v (%T), want the twin's *TransportError 503", err, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary, twin, c, fo := twoHosts(t, tt.first)
			if tt.setup != nil {
				tt.setup(c)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			call := tt.call
			if call == nil {
				call = query
			}
			start := time.Now()
			err := call(ctx, c)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("the call took %v", d)
			}
			tt.wantErr(t, err)
			if n := len(primary.received()); n != 1 {
				t.Errorf("the first host received %d requests, want 1", n)
			}
			if n := len(twin.received()); n != tt.twin {
				t.Errorf("the twin received %d requests, want %d", n, tt.twin)
			}
			if fo.calls != tt.calls {
				t.Errorf("OnFailover called %d times, want %d", fo.calls, tt.calls)
			}
		})
	}
}

// A refund whose first host fails, and whose twin answers SYSTEMERROR
// first, is sent a third time to the twin, always the same request.
func TestFailoverRefundSystemError(t *testing.T) {
	primary, srv1 := newAPIFake(t, closeConnection)
	var n atomic.Int32 // requests answered by the twin
	twin, srv2 := newAPIFake(t, func(w http.ResponseWriter, r *http.Request, req Params) Params {
		if n.Add(1) == 1 {
			return failAnswer(req, "SYSTEMERROR", "系统超时")
		}
		return refundAnswer(req)
	})
	c := apiClient(srv1, SignTypeMD5)
	c.FailoverEndpoint = srv2.URL
	fo := &failovers{}
	c.OnFailover = fo.record
	r := validRefund()
	resp, err := c.Refund(context.Background(), &r)
	if err != nil {
		t.Fatalf("Refund: %v", err)
	}
	if resp.RefundID != testRefundID {
		t.Errorf("Refund = %+v", resp)
	}
	p, s := primary.received(), twin.received()
	if len(p) != 1 || len(s) != 2 || fo.calls != 1 {
		t.Fatalf("requests: first host %d, twin %d; OnFailover %d", len(p), len(s), fo.calls)
	}
	for _, req := range s {
		if req.body != p[0].body {
			t.Errorf("the twin received\n%s\nthe first host\n%s", req.body, p[0].body)
		}
	}
}

// WeChat's hosts are recognised in any case and with the root's trailing
// dot, for the failover twin and for the notify URL rule.
func TestWeChatHosts(t *testing.T) {
	for host, want := range map[string]bool{
		"api.mch.weixin.qq.com": true, "API.MCH.WEIXIN.QQ.COM": true, "api.mch.weixin.qq.com.": true,
		"api2.mch.weixin.qq.com": true, "apihk.mch.weixin.qq.com": true, "pay.weixin.qq.com": true,
		"weixin.qq.com.example.com": false, "evilweixin.qq.com": false, "127.0.0.1": false, "": false,
	} {
		if IsWeChatHost(host) != want {
			t.Errorf("IsWeChatHost(%q) = %v", host, !want)
		}
	}
	for endpoint, want := range map[string]string{
		"":                                DisasterRecoveryEndpoint,
		"https://api.mch.weixin.qq.com":   DisasterRecoveryEndpoint,
		"https://API.MCH.WEIXIN.QQ.COM/":  DisasterRecoveryEndpoint,
		"https://api.mch.weixin.qq.com.":  DisasterRecoveryEndpoint,
		"https://apihk.mch.weixin.qq.com": "",
		"http://127.0.0.1:8081":           "",
	} {
		if got := DefaultFailoverEndpoint(endpoint); got != want {
			t.Errorf("DefaultFailoverEndpoint(%q) = %q, want %q", endpoint, got, want)
		}
	}
}

// A close (which has an effect) whose first attempt got no answer, sent
// again on the twin, which refuses it: the outcome is the first attempt's,
// unknown, not the twin's refusal. An answer about the order's state
// (closed: what a repeat of a close that took effect gets; paid) holds
// whatever the first attempt did, and is passed on. A query, which changes
// nothing, takes the twin's refusal as it is.
func TestFailoverRefusalAfterAnUnknownOutcome(t *testing.T) {
	for _, code := range []string{"ORDERCLOSED", "ORDERPAID"} {
		_, srv1 := newAPIFake(t, closeConnection)
		_, srv2 := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
			return failAnswer(req, code, "订单状态")
		})
		c := apiClient(srv1, SignTypeMD5)
		c.FailoverEndpoint = srv2.URL
		err := c.CloseOrder(context.Background(), testAppID, testOutTradeNo)
		var ae *APIError
		var re *RepeatError
		if errors.As(err, &re) || !errors.As(err, &ae) || ae.Code() != code {
			t.Fatalf("close, no answer then the twin's %s: %v", code, err)
		}
	}
	_, srv1 := newAPIFake(t, closeConnection)
	_, srv2 := newAPIFake(t, func(_ http.ResponseWriter, _ *http.Request, req Params) Params {
		return failAnswer(req, "FREQUENCY_LIMITED", "频率限制")
	})
	c := apiClient(srv1, SignTypeMD5)
	c.FailoverEndpoint = srv2.URL
	err := c.CloseOrder(context.Background(), testAppID, testOutTradeNo)
	var re *RepeatError
	var te *TransportError
	if !errors.As(err, &re) || !errors.As(err, &te) {
		t.Fatalf("close, no answer then the twin's refusal: %v, want a *RepeatError of the first attempt's *TransportError", err)
	}
	_, err = c.QueryOrder(context.Background(), testAppID, testOutTradeNo)
	var ae *APIError
	if errors.As(err, &re) || !errors.As(err, &ae) || ae.Code() != "FREQUENCY_LIMITED" {
		t.Fatalf("query, no answer then the twin's refusal: %v, want the twin's FREQUENCY_LIMITED", err)
	}
}
