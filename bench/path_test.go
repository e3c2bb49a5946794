package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv2"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// fakeWeChat answers every request with WeChat's signed unifiedorder
// answer, as bench/fakewechat does for the load test.
func fakeWeChat(b *testing.B) *httptest.Server {
	b.Helper()
	reply := unifiedOrderReply(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write(reply)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// orderService is the gateway's service on a SQLite ledger with the test
// merchant speaking API v2 to endpoint.
func orderService(b *testing.B, endpoint string) (*gateway.Service, *gateway.Merchant) {
	b.Helper()
	st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{Path: filepath.Join(b.TempDir(), "ledger.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	client := &wxpay.Client{MchID: MchID, Key: Key, Endpoint: endpoint, HTTPClient: wxpay.NewHTTPClient(256)}
	m := &gateway.Merchant{Name: "default", MchID: MchID, AppIDs: []string{AppID}, NotifyURL: NotifyURL,
		HTTPNotify: gateway.HTTPNotifyLoopback, API: apiv2.New(client)}
	return gateway.New(gateway.Config{Ledger: st}), m
}

// BenchmarkPlaceOrder is the order path below the HTTP handler: the
// caller's JSON decoded and validated, the order recorded, unifiedorder
// signed and POSTed over loopback to a fake WeChat, its answer verified
// and recorded, the pay parameters signed, the answer's JSON encoded.
// Many orders are in flight at once (8 per core), each with its own
// out_trade_no. Issue #13 asks its allocations halved; the fake WeChat's
// own (the server side of net/http) are counted too, and
// BenchmarkPlaceOrderTransportFloor measures what the loopback exchange
// alone allocates, so that the gateway's share is the difference.
func BenchmarkPlaceOrder(b *testing.B) {
	srv := fakeWeChat(b)
	svc, m := orderService(b, srv.URL)
	var seq, sink atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Appendf(nil, `{"out_trade_no":"bench%d","total_fee":1,"body":"%s","trade_type":"JSAPI","openid":"%s"}`, seq.Add(1), OrderBody, OpenID)
			req, err := gateway.DecodeOrderRequest(body)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := svc.PlaceOrder(context.Background(), m, req, "127.0.0.1")
			if err != nil {
				b.Fatal(err)
			}
			if resp.PrepayID != PrepayID {
				b.Fatalf("prepay_id %q", resp.PrepayID)
			}
			// As the handler answers (caddymodule's writeJSON).
			js, err := json.Marshal(resp)
			if err != nil {
				b.Fatal(err)
			}
			sink.Add(int64(len(js)))
		}
	})
}

// BenchmarkPlaceOrderTransportFloor is the loopback exchange of
// BenchmarkPlaceOrder alone: a POST of a unifiedorder-sized body with the
// gateway's HTTP client to the same fake WeChat, the answer read. What
// it allocates (client and server side of net/http) is not the gateway's.
func BenchmarkPlaceOrderTransportFloor(b *testing.B) {
	srv := fakeWeChat(b)
	client := wxpay.NewHTTPClient(256)
	doc := signedUnifiedOrderRequest(b)
	body, err := wxpay.EncodeXML(doc)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(srv.URL+"/pay/unifiedorder", "text/xml", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
