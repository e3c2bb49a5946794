package wxpayv3

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// A call that is safe to repeat goes once more, signed afresh, to
// FailoverEndpoint when the endpoint gives no answer or an HTTP 5xx; an
// order's placement, a POST through Do, and any call the endpoint answered
// below 500 never do.
func TestFailover(t *testing.T) {
	twin := newFakeWeChat(t)
	var mu sync.Mutex // guards twinSaw, written by the twin's server
	var twinSaw []string
	saw := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(twinSaw) }
	forget := func() { mu.Lock(); twinSaw = nil; mu.Unlock() }
	twin.handle(func(r *seenRequest) *reply {
		mu.Lock()
		twinSaw = append(twinSaw, r.Method+" "+r.Path)
		mu.Unlock()
		switch r.Path {
		case "/v3/pay/transactions/out-trade-no/O1/close":
			return &reply{status: http.StatusNoContent}
		case "/v3/pay/transactions/native":
			return jsonReply(t, map[string]string{"code_url": "weixin://wxpay/bizpayurl?pr=1"})
		}
		return jsonReply(t, map[string]string{})
	})
	gone := httptest.NewServer(http.NotFoundHandler())
	goneURL := gone.URL
	gone.Close() // nothing listens there any more
	busy := newFakeWeChat(t)
	busy.handle(func(*seenRequest) *reply {
		return &reply{status: http.StatusServiceUnavailable, unsigned: true, body: []byte("upstream unavailable")}
	})
	refusing := newFakeWeChat(t)
	refusing.handle(func(*seenRequest) *reply {
		return &reply{status: http.StatusBadRequest, body: []byte(`{"code":"PARAM_ERROR","message":"参数错误"}`)}
	})
	order := PrepayRequest{AppID: "wx1", Description: "d", OutTradeNo: "N1", NotifyURL: "https://e/n", Amount: Amount{Total: 1}}

	for _, tc := range []struct {
		name, endpoint string
		failsOver      bool
	}{
		{"endpoint unreachable", goneURL, true},
		{"endpoint answers 503", busy.srv.URL, true},
		{"endpoint answers 400", refusing.srv.URL, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forget()
			c := twin.client()
			c.Endpoint, c.FailoverEndpoint = tc.endpoint, twin.srv.URL+"/"
			c.HTTPClient = http.DefaultClient
			var failovers []string
			c.OnFailover = func(op string, err error) { failovers = append(failovers, op) }

			err := c.Close(context.Background(), "O1")
			if tc.failsOver != (err == nil) {
				t.Fatalf("close: %v", err)
			}
			if got := saw(); tc.failsOver && (len(failovers) != 1 || len(got) != 1 || got[0] != "POST /v3/pay/transactions/out-trade-no/O1/close") {
				t.Fatalf("close: failovers %v, the twin saw %v", failovers, got)
			}
			if !tc.failsOver {
				var ae *APIError
				if !errors.As(err, &ae) || ae.Code != "PARAM_ERROR" || len(failovers) != 0 || len(saw()) != 0 {
					t.Fatalf("an answer below 500 went to the twin: %v, failovers %v, the twin saw %v", err, failovers, saw())
				}
			}
			if err := c.Do(context.Background(), http.MethodGet, "/v3/echo", nil, nil, nil); tc.failsOver != (err == nil) {
				t.Fatalf("a GET through Do: %v", err)
			}

			failovers = nil
			forget()
			if _, err := c.Prepay(context.Background(), TradeTypeNative, &order); err == nil {
				t.Fatal("an order placed although its endpoint failed")
			}
			if err := c.Do(context.Background(), http.MethodPost, "/v3/some/post", nil, map[string]string{"a": "b"}, nil); err == nil {
				t.Fatal("a POST through Do succeeded although its endpoint failed")
			}
			if len(failovers) != 0 || len(saw()) != 0 {
				t.Fatalf("an order or a POST went to the twin: failovers %v, the twin saw %v", failovers, saw())
			}
		})
	}

	// Without a FailoverEndpoint nothing is repeated.
	c := twin.client()
	c.Endpoint, c.HTTPClient = busy.srv.URL, http.DefaultClient
	forget()
	if err := c.Close(context.Background(), "O1"); err == nil || len(saw()) != 0 {
		t.Fatalf("no failover endpoint: %v, the twin saw %v", err, saw())
	}
}

// A call that may have taken effect (the endpoint answered 500
// SYSTEM_ERROR, or nothing) sent again on the failover endpoint, which
// refuses it (a rate limit on a request already under way, say): the
// refusal says nothing of the first attempt, so the outcome stays unknown
// (a refund must then be queried, not forgotten). A query, which changes
// nothing, takes the twin's answer as it is.
func TestFailoverRefusalAfterAnUnknownOutcome(t *testing.T) {
	primary := newFakeWeChat(t)
	primary.handle(func(*seenRequest) *reply {
		return &reply{status: http.StatusInternalServerError, body: []byte(`{"code":"SYSTEM_ERROR","message":"系统超时"}`)}
	})
	twin := newFakeWeChat(t)
	twin.handle(func(r *seenRequest) *reply {
		if r.Method == http.MethodGet {
			return &reply{status: http.StatusNotFound, body: []byte(`{"code":"RESOURCE_NOT_EXISTS","message":"退款单不存在"}`)}
		}
		return &reply{status: http.StatusTooManyRequests, body: []byte(`{"code":"FREQUENCY_LIMITED","message":"频率超限"}`)}
	})
	c := primary.client()
	c.FailoverEndpoint = twin.srv.URL
	c.HTTPClient = http.DefaultClient
	_, err := c.Refund(context.Background(), &RefundRequest{OutTradeNo: "O1", OutRefundNo: "R1", Amount: RefundAmount{Refund: 100, Total: 100, Currency: "CNY"}})
	var fe *FailoverError
	var ae *APIError
	if !OutcomeUnknown(err) || !errors.As(err, &fe) || !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError {
		t.Fatalf("refund, 500 then the twin's 429: %v, want an unknown outcome (the first attempt's 500)", err)
	}
	_, err = c.QueryRefund(context.Background(), "R1")
	if OutcomeUnknown(err) || !errors.As(err, &ae) || ae.Code != "RESOURCE_NOT_EXISTS" {
		t.Fatalf("refund query, 500 then the twin's 404: %v, want the twin's 404", err)
	}
	// A close the twin answers ORDER_CLOSED (what a repeat of a close that
	// took effect gets): an answer about the order, whatever the first
	// attempt did.
	closed := newFakeWeChat(t)
	closed.handle(func(*seenRequest) *reply {
		return &reply{status: http.StatusBadRequest, body: []byte(`{"code":"ORDER_CLOSED","message":"订单已关闭"}`)}
	})
	c.FailoverEndpoint = closed.srv.URL
	err = c.Close(context.Background(), "O1")
	if errors.As(err, &fe) || !errors.As(err, &ae) || ae.Code != "ORDER_CLOSED" {
		t.Fatalf("close, 500 then the twin's ORDER_CLOSED: %v, want ORDER_CLOSED", err)
	}
}
