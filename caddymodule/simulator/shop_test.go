package simulator

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/caddymodule"
)

// The demo shop decides the order: the amount the page asks for, within
// its limits, as an H5 (MWEB) order with its scene; everything else is the
// backend's. (The whole flow, through wxpay_checkout and a browser, is
// caddymodule's TestCheckoutPageInChromium.)
func TestDemoShopCheckout(t *testing.T) {
	shop := newDemoShop(&demoBackend{})
	shop.configure("http://127.0.0.1:1/wxpay", "token")
	for _, tc := range []struct {
		body string
		fee  int64  // 0: refused
		says string // the refusal's message
	}{
		{`{"amount":"12.34"}`, 1234, ""},
		{`{"amount":"0.01"}`, 1, ""},
		{`{"amount":"5"}`, 500, ""},
		{`{"amount":"5.5"}`, 550, ""},
		{`{"amount":" 1000 "}`, 100000, ""},
		{`{"amount":"1000.01"}`, 0, "outside the demo shop's 0.01 to 1000 yuan"},
		{`{"amount":"0"}`, 0, "outside the demo shop's"},
		{`{"amount":"0.001"}`, 0, "at most two decimals"},
		{`{"amount":"-1"}`, 0, "not an amount in yuan"},
		{`{"amount":"1e3"}`, 0, "not an amount in yuan"},
		{`{"amount":""}`, 0, "not an amount in yuan"},
		{`amount=1`, 0, `send JSON`},
	} {
		t.Run(tc.body, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/shop/checkout", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			r.Host = "127.0.0.1:8080"
			w := httptest.NewRecorder()
			shop.ServeHTTP(w, r)
			if tc.fee == 0 {
				if w.Code != 400 || !strings.Contains(w.Body.String(), tc.says) {
					t.Fatalf("%d %s, want 400 saying %q", w.Code, w.Body, tc.says)
				}
				return
			}
			if mt, _, _ := mime.ParseMediaType(w.Header().Get("Content-Type")); w.Code != 200 || mt != caddymodule.OrderMediaType {
				t.Fatalf("%d %s %s", w.Code, w.Header().Get("Content-Type"), w.Body)
			}
			var order struct {
				OutTradeNo string `json:"out_trade_no"`
				TotalFee   int64  `json:"total_fee"`
				TradeType  string `json:"trade_type"`
				SceneInfo  string `json:"scene_info"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &order); err != nil {
				t.Fatal(err)
			}
			if order.TotalFee != tc.fee || order.TradeType != "MWEB" || !strings.HasPrefix(order.OutTradeNo, "shop") || len(order.OutTradeNo) > 32 ||
				order.SceneInfo != `{"h5_info":{"type":"Wap","wap_name":"caddy-wxpay demo shop","wap_url":"http://127.0.0.1:8080/shop/"}}` {
				t.Fatalf("order %+v", order)
			}
		})
	}
}

// The shop's other routes: the page, an order it did not place, methods.
func TestDemoShopRoutes(t *testing.T) {
	shop := newDemoShop(&demoBackend{})
	for _, tc := range []struct {
		method, path string
		want         int
		says         string
	}{
		{"GET", "/shop/", 200, `id="pay"`},
		{"GET", "/shop", 200, `id="pay"`},
		{"POST", "/shop/", 405, "use GET or HEAD"},
		{"GET", "/shop/checkout", 405, "use POST"},
		{"POST", "/shop/checkout", 415, "send Content-Type: application/json"}, // a cross-site form's text/plain or none
		{"GET", "/shop/orders/shop1", 404, "the shop placed no order shop1"},
		{"POST", "/shop/orders/shop1", 405, "use GET"},
		{"GET", "/shop/nothing", 404, "no such page"},
	} {
		w := httptest.NewRecorder()
		shop.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.says) {
			t.Errorf("%s %s: %d %s; want %d saying %q", tc.method, tc.path, w.Code, w.Body, tc.want, tc.says)
		}
	}
	w := httptest.NewRecorder()
	shop.ServeHTTP(w, httptest.NewRequest("GET", "/shop/", nil))
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

// The shop remembers its last maxShopOrders orders, no more.
func TestDemoShopBounded(t *testing.T) {
	shop := newDemoShop(&demoBackend{})
	var first string
	for i := range maxShopOrders + 5 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/shop/checkout", strings.NewReader(`{"amount":"1"}`))
		r.Header.Set("Content-Type", "application/json")
		shop.ServeHTTP(w, r)
		if i == 0 {
			var o struct {
				OutTradeNo string `json:"out_trade_no"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &o)
			first = o.OutTradeNo
		}
	}
	shop.mu.Lock()
	n, placed := len(shop.orders), len(shop.placed)
	_, kept := shop.orders[first]
	shop.mu.Unlock()
	if n != maxShopOrders || placed != maxShopOrders || kept {
		t.Fatalf("%d orders, %d listed, the first kept: %v", n, placed, kept)
	}
}
