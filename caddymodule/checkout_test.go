package caddymodule_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	wxgateway "github.com/caddy-wxpay/caddy-wxpay/gateway"
)

// wxpay_checkout in front of a reverse_proxy: the backend decides the order,
// the client gets pay parameters; other answers pass through untouched.
func TestCheckout(t *testing.T) {
	shop := newBackend(t)
	var endlessWritten atomic.Int64
	shop.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/checkout/jsapi":
			// The client asked for 1 fen; the backend's price wins.
			w.Header().Set("Content-Type", "application/vnd.wxpay.order+json; charset=utf-8")
			w.Header().Set("X-Shop", "kept")
			fmt.Fprintf(w, `{"out_trade_no":"co%s","total_fee":2500,"body":"结账","trade_type":"JSAPI","openid":"oUpF8u"}`, r.URL.Query().Get("n"))
		case "/checkout/gzip":
			w.Header().Set("Content-Type", "application/vnd.wxpay.order+json")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			fmt.Fprintf(zw, `{"out_trade_no":"cz%s","total_fee":300,"body":"b","trade_type":"NATIVE","product_id":"p"}`, r.URL.Query().Get("n"))
			zw.Close()
		case "/checkout/invalid":
			w.Header().Set("Content-Type", "application/vnd.wxpay.order+json")
			io.WriteString(w, `{"out_trade_no":"x1","total_fee":-5,"body":"b","trade_type":"APP"}`)
		case "/checkout/padded":
			// An order of exactly ?size bytes (spaces after the JSON).
			size, _ := strconv.Atoi(r.URL.Query().Get("size"))
			order := fmt.Sprintf(`{"out_trade_no":"cp%s","total_fee":300,"body":"b","trade_type":"NATIVE","product_id":"p"}`, r.URL.Query().Get("n"))
			w.Header().Set("Content-Type", "application/vnd.wxpay.order+json")
			io.WriteString(w, order+strings.Repeat(" ", size-len(order)))
		case "/checkout/endless":
			// An order answer that does not end: the gateway must stop
			// reading it, not keep it.
			w.Header().Set("Content-Type", "application/vnd.wxpay.order+json")
			chunk := bytes.Repeat([]byte(" "), 32<<10)
			for range 64 << 20 / len(chunk) {
				n, err := w.Write(chunk)
				endlessWritten.Add(int64(n))
				if err != nil {
					return
				}
			}
		case "/checkout/download":
			// A large answer that is not an order streams through.
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(bytes.Repeat([]byte("z"), 4<<20))
		case "/checkout/declined":
			// Not 200: passes through even with the order media type.
			w.Header().Set("Content-Type", "application/vnd.wxpay.order+json")
			w.WriteHeader(http.StatusPaymentRequired)
			io.WriteString(w, `{"reason":"out of stock"}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"page":"`+r.URL.Path+`"}`)
		}
	}
	g := startGateway(t, gatewayOptions{extraSite: fmt.Sprintf(`route /checkout/* {
		wxpay_checkout
		reverse_proxy %s
	}`, strings.TrimPrefix(shop.URL, "http://"))})

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Post(g.base+path, "application/json", strings.NewReader(`{"total_fee":1}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}

	t.Run("order placed with the backend's amount", func(t *testing.T) {
		resp, body := get("/checkout/jsapi?n=1")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if resp.Header.Get("X-Shop") != "kept" {
			t.Errorf("the backend's other headers were dropped")
		}
		if !bytes.Contains(body, []byte(`"paySign"`)) || !bytes.Contains(body, []byte(`"prepay_id":"wx`)) {
			t.Fatalf("answer: %s", body)
		}
		o, ok := g.sim.Order(testMchID, "co1")
		if !ok || o.TotalFee != 2500 {
			t.Fatalf("WeChat got %+v, want total_fee 2500", o)
		}
	})
	t.Run("gzip answer", func(t *testing.T) {
		resp, body := get("/checkout/gzip?n=2")
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"code_url":"weixin://`)) || resp.Header.Get("Content-Encoding") != "" {
			t.Fatalf("%d %s %q", resp.StatusCode, body, resp.Header.Get("Content-Encoding"))
		}
	})
	t.Run("invalid backend order", func(t *testing.T) {
		resp, body := get("/checkout/invalid")
		if resp.StatusCode != http.StatusBadGateway || !bytes.Contains(body, []byte("total_fee")) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("order answer size", func(t *testing.T) {
		for i, tc := range []struct {
			size   int
			status int
		}{{wxgateway.MaxBodySize, 200}, {wxgateway.MaxBodySize + 1, http.StatusBadGateway}} {
			resp, body := get(fmt.Sprintf("/checkout/padded?n=%d&size=%d", i, tc.size))
			if resp.StatusCode != tc.status {
				t.Fatalf("%d bytes: %d %s", tc.size, resp.StatusCode, body)
			}
			if tc.status != 200 && !bytes.Contains(body, []byte("BACKEND_INVALID_ORDER")) {
				t.Fatalf("%d bytes: %s", tc.size, body)
			}
		}
	})
	t.Run("an endless order answer is not read to its end", func(t *testing.T) {
		resp, body := get("/checkout/endless")
		if resp.StatusCode != http.StatusBadGateway || !bytes.Contains(body, []byte("larger than 65536 bytes")) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		// The backend's writes fail once the gateway stops reading and
		// the socket buffers between them are full: far short of 64 MiB.
		deadline := time.Now().Add(10 * time.Second)
		for last := int64(-1); ; time.Sleep(50 * time.Millisecond) {
			n := endlessWritten.Load()
			if n == last {
				if n >= 32<<20 {
					t.Fatalf("the backend wrote %d bytes of its endless answer", n)
				}
				t.Logf("the backend wrote %d bytes before its writes failed", n)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the backend is still writing (%d bytes)", n)
			}
			last = n
		}
	})
	t.Run("a large answer that is not an order streams through", func(t *testing.T) {
		resp, body := get("/checkout/download")
		if resp.StatusCode != 200 || len(body) != 4<<20 || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("%d %d bytes %s", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
		}
	})
	t.Run("other answers pass through", func(t *testing.T) {
		resp, body := get("/checkout/declined")
		if resp.StatusCode != http.StatusPaymentRequired || string(body) != `{"reason":"out of stock"}` {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = get("/checkout/cart")
		if resp.StatusCode != 200 || string(body) != `{"page":"/checkout/cart"}` || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("the site's own routes still answer", func(t *testing.T) {
		resp, err := http.Get(g.base + "/anything")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "site" {
			t.Fatalf("got %q", body)
		}
	})
}
