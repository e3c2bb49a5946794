package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv2"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// The demo's merchant: its client certificate (demo/apiclient_cert.pem,
// CN 10000100) is issued by demo/ca.pem, which the simulator trusts for
// refunds. The key is the one of WeChat's signature example.
const (
	mchID  = "10000100"
	apiKey = wxpay.APIKey("192006250b4c09247ec02edce69f6a2d")
	appID  = "wxd930ea5d5a258f4f"
	appID2 = "wx2421b1c4370ec43b"
	openID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
)

// clock is the one clock of a test: the gateway, the reconciler and the
// simulator read it, and the test moves it instead of sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a gateway service for the demo merchant with a SQLite ledger,
// against the strict simulator over TLS (mutual for refunds), with
// WeChat's notifications reaching the service through a plain net/http
// server: no Caddy.
type env struct {
	t        *testing.T
	clock    *clock
	sim      *wxpaysim.Simulator
	store    ledger.Store
	svc      *gateway.Service
	merchant *gateway.Merchant
}

func newEnv(t *testing.T, withLedger bool, direct gateway.Deliverer) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC)}}
	caPEM := readFile(t, "../demo/ca.pem")
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(caPEM) {
		t.Fatal("demo/ca.pem holds no certificate")
	}
	e.sim = wxpaysim.New(wxpaysim.Config{
		Merchants: []wxpaysim.Merchant{{MchID: mchID, Key: apiKey, AppIDs: []string{appID, appID2}}},
		TimeScale: 0.001, Now: e.clock.Now, ClientCAs: cas,
	})
	serverCert, err := tls.X509KeyPair(readFile(t, "../demo/sim_cert.pem"), readFile(t, "../demo/sim_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewUnstartedServer(e.sim)
	simSrv.TLS = e.sim.TLSConfig(serverCert)
	simSrv.StartTLS()
	t.Cleanup(func() { e.sim.Close(); simSrv.Close() })

	cfg := gateway.Config{Now: e.clock.Now, Direct: direct, ReconcileDelay: 5 * time.Minute}
	if withLedger {
		st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{Path: filepath.Join(t.TempDir(), "ledger.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		e.store, cfg.Ledger = st, st
	}
	e.svc = gateway.New(cfg)

	notify := http.NewServeMux()
	take := func(accept func(*gateway.Service, context.Context, *gateway.Merchant, gateway.Notification) gateway.Reply) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			reply := accept(e.svc, r.Context(), e.merchant, gateway.Notification{Header: r.Header, Body: body})
			w.Header().Set("Content-Type", reply.ContentType)
			w.WriteHeader(reply.Status)
			_, _ = w.Write(reply.Body)
		}
	}
	notify.HandleFunc("POST /notify", take((*gateway.Service).AcceptPaymentNotification))
	notify.HandleFunc("POST /notify/refund", take((*gateway.Service).AcceptRefundNotification))
	notifySrv := httptest.NewServer(notify)
	t.Cleanup(notifySrv.Close)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := wxpay.LoadClientCertificate(readFile(t, "../demo/apiclient_cert.pem"), readFile(t, "../demo/apiclient_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	trust := func(c *http.Client) *http.Client {
		c.Transport.(*http.Transport).TLSClientConfig.RootCAs = roots
		return c
	}
	plain := wxpay.NewHTTPClient(8)
	plain.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	client := &wxpay.Client{MchID: mchID, Key: apiKey, Endpoint: simSrv.URL, HTTPClient: plain,
		TLSHTTPClient: trust(wxpay.NewMTLSHTTPClient(cert, 8)), Timeout: 5 * time.Second}
	e.merchant = &gateway.Merchant{Name: "default", MchID: mchID, AppIDs: []string{appID, appID2},
		NotifyURL: notifySrv.URL + "/notify", RefundNotifyURL: notifySrv.URL + "/notify/refund", API: apiv2.New(client)}
	return e
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) place(no string, fee int64) *gateway.OrderResponse {
	e.t.Helper()
	resp, err := e.svc.PlaceOrder(context.Background(), e.merchant, &gateway.OrderRequest{
		OutTradeNo: no, TotalFee: fee, Body: "书", TradeType: gateway.TradeTypeJSAPI, OpenID: openID}, "203.0.113.7")
	if err != nil {
		e.t.Fatalf("place %s: %v", no, err)
	}
	return resp
}

// placePaid places a JSAPI order of fee and pays it, its notification
// taken.
func (e *env) placePaid(no string, fee int64) *gateway.OrderResponse {
	e.t.Helper()
	resp := e.place(no, fee)
	if _, err := e.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: resp.PrepayID}); err != nil {
		e.t.Fatal(err)
	}
	e.waitAcked(no, 1)
	return resp
}

// notifiedElsewhere is a notify_url whose server acknowledges WeChat's
// notifications and drops them: the gateway never sees them.
func notifiedElsewhere(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(wxpay.NotifyReplySuccess))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/refund"
}

// waitRefundsSettled waits until WeChat (the simulator) has settled its n
// refunds (SUCCESS).
func (e *env) waitRefundsSettled(n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rfs := e.sim.Refunds()
		settled := 0
		for _, rf := range rfs {
			if rf.Status == wxpaysim.RefundStatusSuccess {
				settled++
			}
		}
		if len(rfs) == n && settled == n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("WeChat never settled the refunds")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitAcked waits until the simulator's notifications of an order were
// all acknowledged.
func (e *env) waitAcked(no string, want int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		acked := 0
		for _, n := range e.sim.Notifications() {
			if n.OutTradeNo == no && n.Acknowledged {
				acked++
			}
		}
		if acked >= want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("order %s: %d notifications acknowledged, want %d", no, acked, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventsOf lists the ledger's events of an order.
func (e *env) eventsOf(no string) []*ledger.Event {
	e.t.Helper()
	all, err := e.store.ListEvents(context.Background(), ledger.ListFilter{MchID: mchID, Limit: ledger.MaxListLimit})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*ledger.Event
	for _, ev := range all {
		if ev.OutTradeNo == no {
			out = append(out, ev)
		}
	}
	return out
}

// onlyEvent is the one event of type typ of order no (the test fails
// unless there is exactly one).
func (e *env) onlyEvent(no, typ string) *ledger.Event {
	e.t.Helper()
	var found []*ledger.Event
	for _, ev := range e.eventsOf(no) {
		if ev.Type == typ {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("%d %s events of order %s, want 1", len(found), typ, no)
	}
	return found[0]
}

func payload(t *testing.T, ev *ledger.Event) (typ string, data map[string]any) {
	t.Helper()
	var p struct {
		Type string
		Data map[string]any
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p.Type, p.Data
}

// An order placed, paid and notified: recorded before its prepay_id is
// handed out, the notification verified, cross-checked and stored with
// the order PAID; the pay parameters verify with the merchant's key; the
// same order asked again is answered from the ledger, and refused once
// paid.
func TestPlacePayNotify(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	resp := e.place("g1", 2500)
	pp, ok := resp.PayParams.(*wxpay.JSAPIPayParams)
	if !ok || pp.Package != "prepay_id="+resp.PrepayID || pp.TimeStamp != "1796176800" {
		t.Fatalf("pay params %#v", resp.PayParams)
	}
	if err := wxpay.Verify(wxpay.Params{{Name: "appId", Value: pp.AppID}, {Name: "nonceStr", Value: pp.NonceStr},
		{Name: "package", Value: pp.Package}, {Name: "signType", Value: pp.SignType}, {Name: "timeStamp", Value: pp.TimeStamp},
		{Name: "sign", Value: pp.PaySign}}, apiKey, wxpay.SignTypeMD5); err != nil {
		t.Fatalf("paySign: %v", err)
	}
	o, err := e.store.GetOrder(ctx, mchID, "g1")
	if err != nil || o.State != ledger.OrderNotPay || o.TotalFee != 2500 || o.PrepayID != resp.PrepayID ||
		!o.NextCheckAt.Equal(e.clock.Now().Add(5*time.Minute)) || !o.ExpiresAt.Equal(e.clock.Now().Add(2*time.Hour)) {
		t.Fatalf("recorded order %+v, %v", o, err)
	}
	if so, _ := e.sim.Order(mchID, "g1"); so.Params.Get("spbill_create_ip") != "203.0.113.7" {
		t.Fatalf("the client's IP did not reach WeChat: %+v", so)
	}

	// Asked again: the recorded prepay_id, fresh pay parameters, WeChat
	// not asked.
	e.clock.Add(time.Minute)
	again := e.place("g1", 2500)
	if again.PrepayID != resp.PrepayID || again.PayParams.(*wxpay.JSAPIPayParams).TimeStamp == pp.TimeStamp {
		t.Fatalf("asked again: %+v", again)
	}
	if n := len(e.sim.Orders()); n != 1 {
		t.Fatalf("WeChat saw %d orders", n)
	}
	if _, err := e.svc.PlaceOrder(ctx, e.merchant, &gateway.OrderRequest{OutTradeNo: "g1", TotalFee: 1, Body: "书",
		TradeType: gateway.TradeTypeJSAPI, OpenID: openID}, "127.0.0.1"); gateway.ErrorFor(err).Code != "OUT_TRADE_NO_USED" {
		t.Fatalf("other content: %v", err)
	}

	pay, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID, Duplicate: true})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAcked("g1", 2)
	evs := e.eventsOf("g1")
	if len(evs) != 1 || evs[0].ID != event.PaymentID(mchID, pay.TransactionID, "g1") {
		t.Fatalf("events %+v, want one for transaction %s", evs, pay.TransactionID)
	}
	typ, data := payload(t, evs[0])
	if typ != event.PaymentSucceeded || data["total_fee"] != float64(2500) || data["transaction_id"] != pay.TransactionID || data["sign"] != nil {
		t.Fatalf("event %s %v", typ, data)
	}
	if o, _ := e.store.GetOrder(ctx, mchID, "g1"); o.State != ledger.OrderPaid {
		t.Fatalf("order state %s after the payment", o.State)
	}
	if _, err := e.svc.PlaceOrder(ctx, e.merchant, &gateway.OrderRequest{OutTradeNo: "g1", TotalFee: 2500, Body: "书",
		TradeType: gateway.TradeTypeJSAPI, OpenID: openID}, "127.0.0.1"); gateway.ErrorFor(err).Code != "ORDERPAID" {
		t.Fatalf("a paid order placed again: %v", err)
	}
}

// A verified notification that disagrees with the order placed is stored
// and forwarded as payment.mismatch with both figures, never as a success.
func TestNotificationMismatch(t *testing.T) {
	e := newEnv(t, true, nil)
	resp := e.place("m1", 100)
	if _, err := e.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: resp.PrepayID, TotalFee: 1}); err != nil {
		t.Fatal(err)
	}
	e.waitAcked("m1", 1)
	evs := e.eventsOf("m1")
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	typ, data := payload(t, evs[0])
	mm, _ := data["mismatch"].(map[string]any)
	fee, _ := mm["total_fee"].(map[string]any)
	if typ != event.PaymentMismatch || evs[0].Type != event.PaymentMismatch || fee["order"] != float64(100) || fee["notification"] != float64(1) {
		t.Fatalf("event %s %v", typ, data)
	}
	if o, _ := e.store.GetOrder(context.Background(), mchID, "m1"); o.State != ledger.OrderMismatch {
		t.Fatalf("order state %s", o.State)
	}
}

// Notifications that are not the merchant's, or not WeChat's, are refused
// with WeChat's FAIL document, and nothing is stored.
func TestNotificationRefused(t *testing.T) {
	e := newEnv(t, true, nil)
	doc := func(mch, app string, key wxpay.APIKey) []byte {
		p := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"},
			{Name: "appid", Value: app}, {Name: "mch_id", Value: mch}, {Name: "nonce_str", Value: "n"},
			{Name: "out_trade_no", Value: "x1"}, {Name: "transaction_id", Value: "4200000000000000000000000001"},
			{Name: "total_fee", Value: "1"}, {Name: "trade_type", Value: "JSAPI"}}
		sign, err := wxpay.Sign(p, key, wxpay.SignTypeMD5)
		if err != nil {
			t.Fatal(err)
		}
		b, err := wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		body   []byte
		reason string
	}{
		{"another merchant", doc("10000999", appID, apiKey), "mch_id mismatch"},
		{"another app", doc(mchID, "wx0000000000000000", apiKey), "appid mismatch"},
		{"another key", doc(mchID, appID, "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"), "invalid notification"},
		{"tampered", bytes.Replace(doc(mchID, appID, apiKey), []byte("[1]"), []byte("[2]"), 1), "invalid notification"},
		{"not XML", []byte("xml"), "invalid notification"},
		{"APIv3's JSON to a merchant without APIv3", []byte(`{"id":"EV-1"}`), "no API version of the merchant takes this notification"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := e.svc.AcceptPaymentNotification(context.Background(), e.merchant, gateway.Notification{Body: tt.body})
			p, err := wxpay.DecodeXML(reply.Body)
			if reply.Status != http.StatusBadRequest || err != nil || p.Get("return_code") != "FAIL" || p.Get("return_msg") != tt.reason {
				t.Fatalf("reply %d %s", reply.Status, reply.Body)
			}
		})
	}
	if n := len(e.eventsOf("x1")); n != 0 {
		t.Fatalf("%d events stored from refused notifications", n)
	}
	// The control: the same document, the merchant's, is taken.
	reply := e.svc.AcceptPaymentNotification(context.Background(), e.merchant, gateway.Notification{Body: doc(mchID, appID, apiKey)})
	if reply.Status != http.StatusOK || string(reply.Body) != wxpay.NotifyReplySuccess {
		t.Fatalf("the merchant's notification: %d %s", reply.Status, reply.Body)
	}
}

// A payment whose notification never came is found by the reconciler
// once it is due — the test moves the clock, it does not wait — recorded
// under the id the notification would have had, so that the late
// notification is a duplicate. An order left unpaid past its expiry is
// closed.
func TestReconcilerFindsLostPaymentAndClosesExpired(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	lost := e.place("r1", 300)
	e.place("r2", 400)
	pay, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: lost.PrepayID, Lost: true})
	if err != nil {
		t.Fatal(err)
	}
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant},
		Delay: 5 * time.Minute, CloseExpired: true}

	rc.Round(ctx, setup, time.Minute)
	if n := len(e.eventsOf("r1")); n != 0 {
		t.Fatalf("checked before its delay: %d events", n)
	}
	e.clock.Add(5 * time.Minute)
	rc.Round(ctx, setup, time.Minute)
	evs := e.eventsOf("r1")
	if len(evs) != 1 || evs[0].ID != event.PaymentID(mchID, pay.TransactionID, "r1") {
		t.Fatalf("events of the lost payment: %+v", evs)
	}
	if o, _ := e.store.GetOrder(ctx, mchID, "r1"); o.State != ledger.OrderPaid || !o.NextCheckAt.IsZero() {
		t.Fatalf("order after the check: %+v", o)
	}
	if err := e.sim.SendNotification(ctx, mchID, "r1"); err != nil {
		t.Fatal(err)
	}
	e.waitAcked("r1", 1)
	if n := len(e.eventsOf("r1")); n != 1 {
		t.Fatalf("the late notification made %d events", n)
	}

	// r2 stays unpaid: checked again one delay later (doubling after), then closed once
	// expired.
	if o, _ := e.store.GetOrder(ctx, mchID, "r2"); o.Checks != 1 || !o.NextCheckAt.Equal(e.clock.Now().Add(5*time.Minute)) {
		t.Fatalf("r2 after one check: %+v", o)
	}
	e.clock.Add(2*time.Hour + time.Minute)
	rc.Round(ctx, setup, time.Minute)
	if o, _ := e.store.GetOrder(ctx, mchID, "r2"); o.State != ledger.OrderClosed {
		t.Fatalf("r2 past its expiry: %+v", o)
	}
	if so, _ := e.sim.Order(mchID, "r2"); so.State != wxpaysim.StateClosed {
		t.Fatalf("WeChat's r2: %s", so.State)
	}
}

// A query that finds a payment records it like its notification; closing
// an order records it closed; WeChat's refusals keep their code.
func TestQueryAndClose(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	resp := e.place("q1", 100)
	if _, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID, Lost: true}); err != nil {
		t.Fatal(err)
	}
	q, err := e.svc.QueryOrder(ctx, e.merchant, "q1", "")
	if err != nil || q.TradeState != gateway.TradeStateSuccess || q.TotalFee != 100 {
		t.Fatalf("query: %+v, %v", q, err)
	}
	if evs := e.eventsOf("q1"); len(evs) != 1 || evs[0].Type != event.PaymentSucceeded {
		t.Fatalf("events after the query: %+v", evs)
	}
	e.place("q2", 100)
	if err := e.svc.CloseOrder(ctx, e.merchant, "q2", ""); err != nil {
		t.Fatal(err)
	}
	if o, _ := e.store.GetOrder(ctx, mchID, "q2"); o.State != ledger.OrderClosed {
		t.Fatalf("closed order: %+v", o)
	}
	if err := e.svc.CloseOrder(ctx, e.merchant, "q1", ""); gateway.ErrorFor(err).Status != http.StatusConflict || gateway.ErrorFor(err).Code != "ORDERPAID" {
		t.Fatalf("closing a paid order: %v", err)
	}
	if _, err := e.svc.QueryOrder(ctx, e.merchant, "nope", ""); gateway.ErrorFor(err).Status != http.StatusNotFound {
		t.Fatalf("an unknown order: %v", err)
	}
	if _, err := e.svc.QueryOrder(ctx, e.merchant, "q1", "wx0000000000000000"); gateway.ErrorFor(err).Status != http.StatusBadRequest {
		t.Fatalf("another merchant's app id: %v", err)
	}
}

// A refund over mutual TLS, recorded; its notification decrypted,
// cross-checked and stored with the refund's new state; the same
// out_refund_no with other amounts refused before WeChat is asked.
func TestRefundAndItsNotification(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.placePaid("f1", 1000)
	rr, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "f1", OutRefundNo: "rf1", TotalFee: 1000, RefundFee: 300})
	if err != nil || rr.RefundID == "" || rr.Status != gateway.RefundStatusProcessing || rr.RefundFee != 300 {
		t.Fatalf("refund: %+v, %v", rr, err)
	}
	if r, err := e.store.GetRefund(ctx, mchID, "rf1"); err != nil || r.RefundID != rr.RefundID || r.State != ledger.RefundProcessing {
		t.Fatalf("recorded refund %+v, %v", r, err)
	}
	if _, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "f1", OutRefundNo: "rf1", TotalFee: 1000, RefundFee: 301}); gateway.ErrorFor(err).Code != "OUT_REFUND_NO_USED" {
		t.Fatalf("the same number, another amount: %v", err)
	}
	if n := len(e.sim.Refunds()); n != 1 {
		t.Fatalf("WeChat saw %d refunds", n)
	}
	// The simulator notifies the refund's success (RefundDelay, scaled).
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := e.store.GetRefund(ctx, mchID, "rf1")
		if r.State == ledger.RefundSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refund state %s", r.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var refundEvents []*ledger.Event
	for _, ev := range e.eventsOf("f1") {
		if ev.Type != event.PaymentSucceeded {
			refundEvents = append(refundEvents, ev)
		}
	}
	if len(refundEvents) != 1 || refundEvents[0].ID != event.RefundID(mchID, rr.RefundID, "SUCCESS") || refundEvents[0].Type != event.RefundSucceeded {
		t.Fatalf("refund events %+v", refundEvents)
	}

	// A refund notification for another amount than the refund placed:
	// refund.mismatch, and the refund's state is left.
	info := wxpay.Params{{Name: "out_refund_no", Value: "rf1"}, {Name: "refund_id", Value: rr.RefundID},
		{Name: "transaction_id", Value: "4200000000000000000000000009"}, {Name: "out_trade_no", Value: "f1"},
		{Name: "total_fee", Value: "1000"}, {Name: "refund_fee", Value: "999"}, {Name: "settlement_refund_fee", Value: "999"},
		{Name: "refund_status", Value: "REFUNDCLOSE"}, {Name: "success_time", Value: ""}}
	reqInfo, err := wxpay.EncryptRefundInfo(info, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := wxpay.EncodeXML(wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "appid", Value: appID},
		{Name: "mch_id", Value: mchID}, {Name: "nonce_str", Value: "n"}, {Name: "req_info", Value: reqInfo}})
	if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: body}); reply.Status != http.StatusOK {
		t.Fatalf("reply %d %s", reply.Status, reply.Body)
	}
	// A refund.mismatch, under an id of its own: not the one of the
	// refund.closed a genuine notification would make.
	if _, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, rr.RefundID, "REFUNDCLOSE")); err == nil {
		t.Fatal("the mismatch took the id of the genuine notification's event")
	}
	e.onlyEvent("f1", event.RefundMismatch)
	if r, _ := e.store.GetRefund(ctx, mchID, "rf1"); r.State != ledger.RefundSuccess {
		t.Fatalf("a mismatched notification changed the refund to %s", r.State)
	}
}

// Without a ledger, each event goes to the backend before WeChat hears
// back: a backend that refuses it makes the reply a FAIL, so WeChat
// retries; once the backend takes it, SUCCESS.
func TestWithoutLedgerDeliversBeforeReplying(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	down := true
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := event.Verify([]byte("whsec-test-0123456789abcdef"), r.Header, body, time.Minute, time.Now()); err != nil {
			t.Errorf("delivery does not verify: %v", err)
		}
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got = append(got, body)
	}))
	defer backend.Close()
	wh := delivery.NewWebhook(backend.URL, []byte("whsec-test-0123456789abcdef"), 2*time.Second, nil)
	e := newEnv(t, false, wh)
	resp, err := e.svc.PlaceOrder(context.Background(), e.merchant, &gateway.OrderRequest{
		OutTradeNo: "d1", TotalFee: 100, Body: "b", TradeType: gateway.TradeTypeNative, ProductID: "p1"}, "127.0.0.1")
	if err != nil || resp.CodeURL == "" || resp.PayParams != nil {
		t.Fatalf("a NATIVE order: %+v, %v", resp, err)
	}
	if _, err := e.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: resp.PrepayID}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := e.sim.Notifications()
		if len(recs) == 1 && len(recs[0].Attempts) >= 2 {
			if recs[0].Acknowledged {
				t.Fatal("acknowledged while the backend was down")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no retry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	e.waitAcked("d1", 1)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("the backend took %d events", len(got))
	}
	var ev event.Event
	if err := json.Unmarshal(got[0], &ev); err != nil || ev.Type != event.PaymentSucceeded || ev.Data["out_trade_no"] != "d1" {
		t.Fatalf("event %s, %v", got[0], err)
	}
}

// Storage that fails makes the reply a FAIL (WeChat retries), never a
// SUCCESS.
func TestStorageFailureRepliesFail(t *testing.T) {
	e := newEnv(t, true, nil)
	resp := e.place("s1", 100)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: resp.PrepayID}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs := e.sim.Notifications()
		if len(recs) == 1 && len(recs[0].Attempts) >= 1 {
			a := recs[0].Attempts[0]
			if a.Acked || a.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("with the ledger closed: %+v", a)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no attempt")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A failure notified after the order was paid (WeChat's order of delivery
// is not guaranteed) is acknowledged and stored, but held: the backend
// never gets payment.failed after payment.succeeded, and the order stays
// paid. A failed attempt's id is never the success's.
func TestLateFailureAfterSuccessIsHeld(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	resp := e.place("h1", 100)
	pay, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAcked("h1", 1)
	failed := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "FAIL"},
		{Name: "err_code", Value: "NOTENOUGH"}, {Name: "appid", Value: appID}, {Name: "mch_id", Value: mchID},
		{Name: "nonce_str", Value: "n"}, {Name: "out_trade_no", Value: "h1"}, {Name: "transaction_id", Value: pay.TransactionID},
		{Name: "total_fee", Value: "100"}, {Name: "trade_type", Value: "JSAPI"}}
	sign, _ := wxpay.Sign(failed, apiKey, wxpay.SignTypeMD5)
	body, _ := wxpay.EncodeXML(append(failed, wxpay.Param{Name: "sign", Value: sign}))
	if reply := e.svc.AcceptPaymentNotification(ctx, e.merchant, gateway.Notification{Body: body}); reply.Status != http.StatusOK {
		t.Fatalf("reply %d %s", reply.Status, reply.Body)
	}
	held, _, err := e.store.GetEvent(ctx, event.FailedPaymentID(mchID, pay.TransactionID, "h1"))
	if err != nil || held.State != ledger.EventHeld || held.Type != event.PaymentFailed {
		t.Fatalf("the late failure: %+v, %v", held, err)
	}
	if o, _ := e.store.GetOrder(ctx, mchID, "h1"); o.State != ledger.OrderPaid {
		t.Fatalf("order state %s after a late failure", o.State)
	}
	paid, _, err := e.store.GetEvent(ctx, event.PaymentID(mchID, pay.TransactionID, "h1"))
	if err != nil || paid.Type != event.PaymentSucceeded || paid.State != ledger.EventPending {
		t.Fatalf("the success: %+v, %v", paid, err)
	}
}

// An order whose payment failed (PAYERROR) is still reconciled: paid later
// without a notification, the reconciler finds it.
func TestReconcilerSettlesFailedAttempts(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	resp := e.place("pe1", 100)
	if _, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID, Fail: true}); err != nil {
		t.Fatal(err)
	}
	e.waitAcked("pe1", 1)
	if o, _ := e.store.GetOrder(ctx, mchID, "pe1"); o.State != ledger.OrderPayError {
		t.Fatalf("after the failure: %s", o.State)
	}
	pay, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID, Lost: true})
	if err != nil {
		t.Fatal(err)
	}
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	e.clock.Add(5 * time.Minute)
	rc.Round(ctx, &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant}, Delay: 5 * time.Minute}, time.Minute)
	if o, _ := e.store.GetOrder(ctx, mchID, "pe1"); o.State != ledger.OrderPaid {
		t.Fatalf("after the reconciliation: %s", o.State)
	}
	if _, _, err := e.store.GetEvent(ctx, event.PaymentID(mchID, pay.TransactionID, "pe1")); err != nil {
		t.Fatalf("the payment found: %v", err)
	}
}

// failingLedger is the real ledger, failing the writes named.
type failingLedger struct {
	ledger.Store
	put, prepay bool
}

func (f failingLedger) PutOrder(ctx context.Context, o *ledger.Order) error {
	if f.put {
		return errors.New("disk full")
	}
	return f.Store.PutOrder(ctx, o)
}

func (f failingLedger) RecordPrepay(ctx context.Context, o *ledger.Order) error {
	if f.prepay {
		return errors.New("disk full")
	}
	return f.Store.RecordPrepay(ctx, o)
}

// An order is recorded before WeChat is asked to create it, so that no
// order WeChat knows is missing from the ledger; its pay parameters are
// handed out only once WeChat's answer is recorded. A placement WeChat
// refused is forgotten (the number can be placed with other content); one
// whose effect is unknown stays recorded. Placed again with a healthy
// ledger, every case ends with the order recorded with WeChat's prepay_id.
func TestPlacementRecordedFirst(t *testing.T) {
	tests := []struct {
		name     string
		ledger   failingLedger // which writes fail
		fault    func(sim *wxpaysim.Simulator)
		timeout  time.Duration
		status   int
		code     string
		atWeChat bool // WeChat knows the order after the failed placement
		recorded bool // the ledger holds it (without a prepay_id)
	}{
		{name: "record before fails", ledger: failingLedger{put: true}, status: http.StatusServiceUnavailable, code: "STORAGE_UNAVAILABLE"},
		{name: "record of the answer fails", ledger: failingLedger{prepay: true}, status: http.StatusServiceUnavailable,
			code: "STORAGE_UNAVAILABLE", atWeChat: true, recorded: true},
		{name: "WeChat refuses", fault: func(sim *wxpaysim.Simulator) { sim.FailNext("unifiedorder", 1, "INVALID_REQUEST") },
			status: http.StatusBadGateway, code: "INVALID_REQUEST"},
		{name: "WeChat's system error", fault: func(sim *wxpaysim.Simulator) { sim.FailNext("unifiedorder", 1, "SYSTEMERROR") },
			status: http.StatusBadGateway, code: "SYSTEMERROR", recorded: true},
		{name: "no answer in time", fault: func(sim *wxpaysim.Simulator) { sim.DelayNext("unifiedorder", 1, 10*time.Second) },
			timeout: 200 * time.Millisecond, status: http.StatusGatewayTimeout, code: "WECHAT_TIMEOUT", atWeChat: true, recorded: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, true, nil)
			ctx := context.Background()
			req := &gateway.OrderRequest{OutTradeNo: "c1", TotalFee: 100, Body: "b", TradeType: gateway.TradeTypeNative, ProductID: "p"}
			svc := e.svc
			if tc.ledger.put || tc.ledger.prepay {
				tc.ledger.Store = e.store
				svc = gateway.New(gateway.Config{Ledger: tc.ledger, Now: e.clock.Now})
			}
			if tc.fault != nil {
				tc.fault(e.sim)
			}
			pctx := ctx
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				pctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			resp, err := svc.PlaceOrder(pctx, e.merchant, req, "127.0.0.1")
			if ge := gateway.ErrorFor(err); resp != nil || ge.Status != tc.status || ge.Code != tc.code {
				t.Fatalf("answer: %+v, %v; want %d %s", resp, err, tc.status, tc.code)
			}
			so, atWeChat := e.sim.Order(mchID, "c1")
			if atWeChat != tc.atWeChat {
				t.Fatalf("WeChat knows the order: %v, want %v", atWeChat, tc.atWeChat)
			}
			if atWeChat && strings.Contains(err.Error(), so.CodeURL) {
				t.Fatalf("the code_url was handed out: %v", err)
			}
			o, err := e.store.GetOrder(ctx, mchID, "c1")
			switch {
			case tc.recorded && (err != nil || o.PrepayID != "" || o.TotalFee != 100 || o.State != ledger.OrderNotPay):
				t.Fatalf("recorded: %+v, %v", o, err)
			case !tc.recorded && !errors.Is(err, ledger.ErrNotFound):
				t.Fatalf("the ledger holds an order WeChat does not: %+v, %v", o, err)
			}
			if !tc.recorded {
				// Nothing holds the number: it takes other content.
				req.TotalFee = 200
			}
			resp, err = e.svc.PlaceOrder(ctx, e.merchant, req, "127.0.0.1")
			if err != nil {
				t.Fatalf("placed again: %v", err)
			}
			so, _ = e.sim.Order(mchID, "c1")
			if o, err := e.store.GetOrder(ctx, mchID, "c1"); err != nil || o.PrepayID != so.PrepayID || resp.CodeURL != so.CodeURL || o.TotalFee != req.TotalFee {
				t.Fatalf("placed again: %+v, recorded %+v, %v; WeChat's %+v", resp, o, err, so)
			}
		})
	}
}

// An order recorded before a placement whose answer never came, which
// WeChat does not know, is recorded closed once expired, without asking
// WeChat to close it.
func TestReconcilerClosesOrdersWeChatNeverCreated(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.sim.FailNext("unifiedorder", 1, "SYSTEMERROR")
	if _, err := e.svc.PlaceOrder(ctx, e.merchant, &gateway.OrderRequest{OutTradeNo: "n1", TotalFee: 1, Body: "b",
		TradeType: gateway.TradeTypeNative, ProductID: "p"}, "127.0.0.1"); err == nil {
		t.Fatal("placed despite the fault")
	}
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant},
		Delay: 5 * time.Minute, CloseExpired: true}
	e.clock.Add(5 * time.Minute)
	rc.Round(ctx, setup, time.Minute)
	if o, _ := e.store.GetOrder(ctx, mchID, "n1"); o.State != ledger.OrderNotPay || o.NextCheckAt.IsZero() {
		t.Fatalf("before its expiry: %+v", o)
	}
	e.clock.Add(2 * time.Hour)
	rc.Round(ctx, setup, time.Minute)
	if o, _ := e.store.GetOrder(ctx, mchID, "n1"); o.State != ledger.OrderClosed || !o.NextCheckAt.IsZero() {
		t.Fatalf("past its expiry: %+v", o)
	}
}

// mispredicting is the real ledger with its order-key prediction wrong
// every time: the ledger refuses each wrongly labelled event, and the
// gateway records it labelled right.
type mispredicting struct{ ledger.Store }

func (m mispredicting) MayHoldOrder(mchID, outTradeNo string) bool {
	_, err := m.Store.GetOrder(context.Background(), mchID, outTradeNo)
	return err != nil
}

// unpredicting is the real ledger as one that other gateways share
// would be: it cannot say which orders it does not hold. It counts the
// events recorded, to show that each payment takes one transaction.
type unpredicting struct {
	ledger.Store
	records *atomic.Int32
}

func (u unpredicting) MayHoldOrder(string, string) bool { return true }
func (u unpredicting) PredictsOrders() bool             { return false }
func (u unpredicting) RecordEvent(ctx context.Context, e *ledger.Event, c ledger.Change) (bool, error) {
	u.records.Add(1)
	return u.Store.RecordEvent(ctx, e, c)
}

// Every payment event says whether it was checked against an order the
// gateway placed: true for the gateway's orders, false for one placed
// elsewhere and without a ledger, whatever the ledger's filter predicted,
// and when it predicts nothing (in one transaction each).
func TestOrderChecked(t *testing.T) {
	for _, name := range []string{"ledger", "wrong predictions", "no predictions"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, true, nil)
			records := new(atomic.Int32)
			switch name {
			case "wrong predictions":
				e.svc = gateway.New(gateway.Config{Ledger: mispredicting{e.store}, Now: e.clock.Now})
			case "no predictions":
				e.svc = gateway.New(gateway.Config{Ledger: unpredicting{e.store, records}, Now: e.clock.Now})
			}
			ctx := context.Background()
			e.placePaid("k1", 100)
			// An order placed outside the gateway.
			body := signedPayment(t, "outside1", 100, "4200000000000000000000000777")
			if reply := e.svc.AcceptPaymentNotification(ctx, e.merchant, gateway.Notification{Body: body}); reply.Status != http.StatusOK {
				t.Fatalf("reply %d %s", reply.Status, reply.Body)
			}
			for no, want := range map[string]bool{"k1": true, "outside1": false} {
				evs := e.eventsOf(no)
				var p struct {
					OrderChecked *bool `json:"order_checked"`
				}
				if len(evs) != 1 || json.Unmarshal(evs[0].Payload, &p) != nil || p.OrderChecked == nil || *p.OrderChecked != want {
					t.Fatalf("%s: events %d, order_checked %v, want %v", no, len(evs), p.OrderChecked, want)
				}
			}
			if name == "no predictions" && records.Load() != 2 {
				t.Fatalf("%d events recorded for 2 payments: want one transaction each", records.Load())
			}
		})
	}
}

// signedPayment is a success notification for the demo merchant.
func signedPayment(t *testing.T, no string, fee int64, tx string) []byte {
	t.Helper()
	p := wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"},
		{Name: "appid", Value: appID}, {Name: "mch_id", Value: mchID}, {Name: "nonce_str", Value: "n"},
		{Name: "out_trade_no", Value: no}, {Name: "transaction_id", Value: tx},
		{Name: "total_fee", Value: strconv.FormatInt(fee, 10)}, {Name: "trade_type", Value: "JSAPI"}}
	sign, err := wxpay.Sign(p, apiKey, wxpay.SignTypeMD5)
	if err != nil {
		t.Fatal(err)
	}
	body, err := wxpay.EncodeXML(append(p, wxpay.Param{Name: "sign", Value: sign}))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// refundNotification is an encrypted refund notification for the demo
// merchant.
func refundNotification(t *testing.T, info wxpay.Params) []byte {
	t.Helper()
	reqInfo, err := wxpay.EncryptRefundInfo(info, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	body, err := wxpay.EncodeXML(wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "appid", Value: appID},
		{Name: "mch_id", Value: mchID}, {Name: "nonce_str", Value: "n"}, {Name: "req_info", Value: reqInfo}})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// A refund notification is believed only once WeChat's refund query
// confirms it: a refund WeChat does not know is refused, a query that
// fails is answered FAIL (WeChat retries) with nothing stored, and facts
// the query contradicts are forwarded as refund.mismatch, the refund left
// as it was.
func TestRefundNotificationConfirmedByQuery(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	resp := e.place("rq1", 1000)
	pay, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID})
	if err != nil {
		t.Fatal(err)
	}
	e.waitAcked("rq1", 1)
	// A refund WeChat never made: refused, nothing stored.
	forged := refundNotification(t, wxpay.Params{{Name: "out_refund_no", Value: "nope1"}, {Name: "refund_id", Value: "50000000000000000001"},
		{Name: "transaction_id", Value: pay.TransactionID}, {Name: "out_trade_no", Value: "rq1"}, {Name: "total_fee", Value: "1000"},
		{Name: "refund_fee", Value: "1000"}, {Name: "settlement_refund_fee", Value: "1000"}, {Name: "refund_status", Value: "SUCCESS"}})
	if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: forged}); reply.Status != http.StatusBadRequest {
		t.Fatalf("a refund WeChat does not know: %d %s", reply.Status, reply.Body)
	}
	rr, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rq1", OutRefundNo: "rf-q1", TotalFee: 1000, RefundFee: 200})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if r, _ := e.store.GetRefund(ctx, mchID, "rf-q1"); r.State == ledger.RefundSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refund's notification never settled it")
		}
		time.Sleep(5 * time.Millisecond)
	}
	info := func(fee, status string) []byte {
		return refundNotification(t, wxpay.Params{{Name: "out_refund_no", Value: "rf-q1"}, {Name: "refund_id", Value: rr.RefundID},
			{Name: "transaction_id", Value: pay.TransactionID}, {Name: "out_trade_no", Value: "rq1"}, {Name: "total_fee", Value: "1000"},
			{Name: "refund_fee", Value: fee}, {Name: "settlement_refund_fee", Value: fee}, {Name: "refund_status", Value: status}})
	}
	before := len(e.eventsOf("rq1"))
	// The query fails: FAIL, nothing stored.
	e.sim.FailNext(wxpaysim.APIRefundQuery, 1, "SYSTEMERROR")
	if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: info("200", "CHANGE")}); reply.Status != http.StatusServiceUnavailable {
		t.Fatalf("a failed query: %d %s", reply.Status, reply.Body)
	}
	if n := len(e.eventsOf("rq1")); n != before {
		t.Fatalf("a notification not confirmed was stored (%d events, %d before)", n, before)
	}
	// The query contradicts the status (a spliced req_info, say): mismatch.
	if reply := e.svc.AcceptRefundNotification(ctx, e.merchant, gateway.Notification{Body: info("200", "CHANGE")}); reply.Status != http.StatusOK {
		t.Fatalf("a contradicted notification: %d %s", reply.Status, reply.Body)
	}
	if _, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, rr.RefundID, "CHANGE")); err == nil {
		t.Fatal("the mismatch took the id of the genuine notification's event")
	}
	ev := e.onlyEvent("rq1", event.RefundMismatch)
	var p struct {
		Data struct {
			Mismatch map[string]event.Discrepancy
		}
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil || p.Data.Mismatch["refund_status"].Queried != "SUCCESS" || p.Data.Mismatch["refund_status"].Notification != "CHANGE" {
		t.Fatalf("mismatch %+v, %v", p.Data.Mismatch, err)
	}
	if r, _ := e.store.GetRefund(ctx, mchID, "rf-q1"); r.State != ledger.RefundSuccess {
		t.Fatalf("a contradicted notification changed the refund to %s", r.State)
	}
}

// A refund whose answer never came may have been made: it was recorded
// UNKNOWN before WeChat was asked (the caller gets 504), and its
// notification, confirmed by WeChat's query, settles it like any other.
func TestRefundWithUnknownOutcome(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.placePaid("ru1", 1000)
	e.sim.DelayNext(wxpaysim.APIRefund, 1, 10*time.Second)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := e.svc.Refund(short, e.merchant, &gateway.RefundRequest{OutTradeNo: "ru1", OutRefundNo: "rfu-1", TotalFee: 1000, RefundFee: 300})
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusGatewayTimeout {
		t.Fatalf("refund without an answer: %v", err)
	}
	// Recorded before WeChat was asked: UNKNOWN, or already SUCCESS when
	// the notification came before the caller gave up.
	if r, err := e.store.GetRefund(ctx, mchID, "rfu-1"); err != nil || (r.State != ledger.RefundUnknown && r.State != ledger.RefundSuccess) || r.RefundFee != 300 {
		t.Fatalf("recorded: %+v, %v", r, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := e.store.GetRefund(ctx, mchID, "rfu-1")
		if r.State == ledger.RefundSuccess {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range e.sim.Notifications() {
				t.Logf("notification %s %s acked=%v attempts=%+v", n.Kind, n.OutRefundNo, n.Acknowledged, n.Attempts)
			}
			t.Fatalf("the refund's notification never settled it: %+v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var types []string
	for _, ev := range e.eventsOf("ru1") {
		types = append(types, ev.Type)
	}
	if !slices.Contains(types, event.RefundSucceeded) {
		t.Fatalf("events: %v", types)
	}
}

// A refund WeChat refused is not kept: the number is free for a refund
// with other amounts. One the ledger cannot record is not asked for.
func TestRefundRefusedIsForgotten(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.placePaid("rr1", 1000)
	e.sim.FailNext(wxpaysim.APIRefund, 1, "NOTENOUGH")
	_, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rr1", OutRefundNo: "rfr-1", TotalFee: 1000, RefundFee: 300})
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusConflict || ge.Code != "NOTENOUGH" {
		t.Fatalf("refused refund: %v", err)
	}
	if r, err := e.store.GetRefund(ctx, mchID, "rfr-1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("a refund WeChat refused is recorded: %+v, %v", r, err)
	}
	if _, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rr1", OutRefundNo: "rfr-1", TotalFee: 1000, RefundFee: 200}); err != nil {
		t.Fatalf("the number with other amounts: %v", err)
	}
	if r, err := e.store.GetRefund(ctx, mchID, "rfr-1"); err != nil || r.RefundFee != 200 || r.RefundID == "" {
		t.Fatalf("recorded: %+v, %v", r, err)
	}

	failing := gateway.New(gateway.Config{Ledger: failingRefundLedger{e.store}, Now: e.clock.Now})
	_, err = failing.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rr1", OutRefundNo: "rfr-2", TotalFee: 1000, RefundFee: 100})
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusServiceUnavailable {
		t.Fatalf("a refund not recorded: %v", err)
	}
	if _, err := e.svc.QueryRefund(ctx, e.merchant, "rfr-2", ""); gateway.ErrorFor(err).Status != http.StatusNotFound {
		t.Fatalf("WeChat was asked for a refund the ledger could not record: %v", err)
	}
}

// failingRefundLedger is the real ledger, failing to record refunds.
type failingRefundLedger struct{ ledger.Store }

func (failingRefundLedger) PutRefund(context.Context, *ledger.Refund) error {
	return errors.New("disk full")
}

// blindRefunds is the real protocol whose refund answers fail
// verification: WeChat makes the refund, the gateway cannot tell.
type blindRefunds struct{ gateway.Protocol }

func (b blindRefunds) Refund(ctx context.Context, r *gateway.RefundRequest) (*gateway.RefundResponse, error) {
	if _, err := b.Protocol.Refund(ctx, r); err != nil {
		return nil, err
	}
	return nil, &gateway.CallError{Kind: gateway.BadSignature, Err: errors.New("the answer did not verify")}
}

// A refund whose answer failed verification, or never came, is recorded
// UNKNOWN (the caller gets 502 or 504) and settled by the reconciler's
// query once its notification is overdue: one WeChat made is recorded and
// forwarded as its notification would have been; one it never made is
// forgotten.
func TestReconcilerSettlesUnknownRefunds(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.merchant.HTTPNotify = gateway.HTTPNotifyLoopback
	elsewhere := notifiedElsewhere(t)
	e.placePaid("us1", 1000)
	blind := *e.merchant
	blind.API = blindRefunds{e.merchant.API}
	_, err := e.svc.Refund(ctx, &blind, &gateway.RefundRequest{OutTradeNo: "us1", OutRefundNo: "usr-made", TotalFee: 1000, RefundFee: 300,
		NotifyURL: elsewhere})
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusBadGateway || ge.Code != "WECHAT_BAD_SIGNATURE" {
		t.Fatalf("a refund whose answer failed verification: %v", err)
	}
	e.sim.FailNext(wxpaysim.APIRefund, 1, "SYSTEMERROR")
	e.sim.FailNext(wxpaysim.APIRefund, 1, "SYSTEMERROR") // the client's one retry too
	_, err = e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "us1", OutRefundNo: "usr-none", TotalFee: 1000, RefundFee: 100})
	if err == nil {
		t.Fatal("a refund WeChat failed was accepted")
	}
	for _, no := range []string{"usr-made", "usr-none"} {
		if r, err := e.store.GetRefund(ctx, mchID, no); err != nil || r.State != ledger.RefundUnknown {
			t.Fatalf("%s: %+v, %v", no, r, err)
		}
	}
	// Let WeChat settle the refund it made (its notification went
	// elsewhere), then reconcile once the notification is overdue.
	e.waitRefundsSettled(1)
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant}, Delay: 5 * time.Minute}
	rc.Round(ctx, setup, time.Minute)
	if r, _ := e.store.GetRefund(ctx, mchID, "usr-made"); r.State != ledger.RefundUnknown {
		t.Fatalf("settled before its notification was overdue: %+v", r)
	}
	e.clock.Add(5 * time.Minute)
	rc.Round(ctx, setup, time.Minute)
	r, err := e.store.GetRefund(ctx, mchID, "usr-made")
	if err != nil || r.State != ledger.RefundSuccess || r.RefundID == "" {
		t.Fatalf("the refund WeChat made: %+v, %v", r, err)
	}
	ev, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, r.RefundID, event.RefundStatusSuccess))
	if err != nil || ev.Type != event.RefundSucceeded {
		t.Fatalf("its event: %+v, %v", ev, err)
	}
	if _, err := e.store.GetRefund(ctx, mchID, "usr-none"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("the refund WeChat never made is still recorded: %v", err)
	}
}

// staleFirstRefundRead is the real ledger whose first GetRefund ran just
// before a concurrent request's PutRefund: it finds nothing; later reads
// are the ledger's.
type staleFirstRefundRead struct {
	ledger.Store
	reads *atomic.Int32
}

func (s staleFirstRefundRead) GetRefund(ctx context.Context, mch, no string) (*ledger.Refund, error) {
	if s.reads.Add(1) == 1 {
		return nil, ledger.ErrNotFound
	}
	return s.Store.GetRefund(ctx, mch, no)
}

// Two requests for one out_refund_no with other amounts, at once: the
// second reads the ledger before the first records its refund, then finds
// its own record refused. It reads again and answers 409 without asking
// WeChat (before: it asked WeChat for its amount, which WeChat made, while
// the ledger recorded the first one's).
func TestConcurrentRefundOtherAmounts(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.placePaid("rc1", 1000)
	// The first request: recorded (UNKNOWN, 200), its call to WeChat not
	// made yet.
	if err := e.store.PutRefund(ctx, &ledger.Refund{MchID: mchID, OutRefundNo: "rc-1", OutTradeNo: "rc1", TotalFee: 1000, RefundFee: 200,
		State: ledger.RefundUnknown, CreatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	second := gateway.New(gateway.Config{Ledger: staleFirstRefundRead{e.store, new(atomic.Int32)}, Now: e.clock.Now})
	_, err := second.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rc1", OutRefundNo: "rc-1", TotalFee: 1000, RefundFee: 300})
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusConflict || ge.Code != "OUT_REFUND_NO_USED" {
		t.Fatalf("the second request: %v, want 409 OUT_REFUND_NO_USED", err)
	}
	if _, err := e.svc.QueryRefund(ctx, e.merchant, "rc-1", ""); gateway.ErrorFor(err).Status != http.StatusNotFound {
		t.Fatalf("WeChat was asked for the refund: query %v", err)
	}
	if r, err := e.store.GetRefund(ctx, mchID, "rc-1"); err != nil || r.RefundFee != 200 || r.State != ledger.RefundUnknown {
		t.Fatalf("the first request's record: %+v, %v", r, err)
	}
}

// A refund WeChat accepted (PROCESSING) whose notification never reaches
// the gateway (here it goes elsewhere; in production, every retry lost) is
// asked about again once RefundRecheck has passed: the refund WeChat
// finished is recorded and forwarded as its notification would have been.
func TestReconcilerFindsFinishedProcessingRefunds(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.merchant.HTTPNotify = gateway.HTTPNotifyLoopback
	e.placePaid("pr1", 1000)
	rr, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "pr1", OutRefundNo: "pr-1", TotalFee: 1000, RefundFee: 400,
		NotifyURL: notifiedElsewhere(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.store.GetRefund(ctx, mchID, "pr-1"); err != nil || r.State != ledger.RefundProcessing {
		t.Fatalf("the refund WeChat accepted: %+v, %v", r, err)
	}
	e.waitRefundsSettled(1)
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant}, Delay: 5 * time.Minute}
	e.clock.Add(10 * time.Minute)
	rc.Round(ctx, setup, time.Minute)
	if r, _ := e.store.GetRefund(ctx, mchID, "pr-1"); r.State != ledger.RefundProcessing {
		t.Fatalf("asked about before RefundRecheck passed: %+v", r)
	}
	e.clock.Add(gateway.RefundRecheck)
	rc.Round(ctx, setup, time.Minute)
	r, err := e.store.GetRefund(ctx, mchID, "pr-1")
	if err != nil || r.State != ledger.RefundSuccess || r.RefundID != rr.RefundID {
		t.Fatalf("the refund WeChat finished: %+v, %v", r, err)
	}
	ev, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, rr.RefundID, event.RefundStatusSuccess))
	if err != nil || ev.Type != event.RefundSucceeded {
		t.Fatalf("its event: %+v, %v", ev, err)
	}
}

// An order with a character WeChat's XML cannot carry is refused (400,
// naming the field) before it is recorded: the same out_trade_no, sent
// again corrected, is placed (before: a 500, and the number was taken by
// a record WeChat never saw).
func TestOrderWithAControlCharacter(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	req := &gateway.OrderRequest{OutTradeNo: "ctl1", TotalFee: 100, Body: "book\x01", TradeType: gateway.TradeTypeNative, ProductID: "p1"}
	_, err := e.svc.PlaceOrder(ctx, e.merchant, req, "203.0.113.7")
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusBadRequest || !strings.Contains(ge.Message, "body") {
		t.Fatalf("an order with a control character: %v (%d %s)", err, ge.Status, ge.Message)
	}
	if _, err := e.store.GetOrder(ctx, mchID, "ctl1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("the refused order was recorded: %v", err)
	}
	req.Body = "book"
	if resp, err := e.svc.PlaceOrder(ctx, e.merchant, req, "203.0.113.7"); err != nil || resp.CodeURL == "" {
		t.Fatalf("the corrected order: %+v, %v", resp, err)
	}
}

// An H5 (MWEB) order placed again within 4 minutes gets the mweb_url it
// was given; later, when WeChat's link (valid 5 minutes) is about to
// expire or has, the order is placed with WeChat again, which issues a new
// one (before: the recorded link was handed out for up to 1 h 55 min, dead
// after 5 minutes).
func TestMWEBOrderPlacedAgain(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	req := &gateway.OrderRequest{OutTradeNo: "h5a", TotalFee: 100, Body: "书", TradeType: gateway.TradeTypeMWEB,
		SceneInfo: `{"h5_info":{"type":"Wap","wap_url":"https://pay.example.com","wap_name":"shop"}}`}
	first, err := e.svc.PlaceOrder(ctx, e.merchant, req, "203.0.113.7")
	if err != nil || first.MWebURL == "" {
		t.Fatalf("placed: %+v, %v", first, err)
	}
	e.clock.Add(3 * time.Minute)
	again, err := e.svc.PlaceOrder(ctx, e.merchant, req, "203.0.113.7")
	if err != nil || again.MWebURL != first.MWebURL {
		t.Fatalf("placed again after 3 minutes: %+v, %v; want the same mweb_url", again, err)
	}
	e.clock.Add(2 * time.Minute)
	later, err := e.svc.PlaceOrder(ctx, e.merchant, req, "203.0.113.7")
	if err != nil || later.MWebURL == "" || later.MWebURL == first.MWebURL || later.PrepayID != first.PrepayID {
		t.Fatalf("placed again after 5 minutes: %+v, %v; want a new mweb_url for the same prepay_id", later, err)
	}
	so, _ := e.sim.Order(mchID, "h5a")
	o, err := e.store.GetOrder(ctx, mchID, "h5a")
	if err != nil || so.MWebURL != later.MWebURL || o.MWebURL != later.MWebURL {
		t.Fatalf("WeChat's mweb_url %q, recorded %+v (%v); handed out %q", so.MWebURL, o, err, later.MWebURL)
	}
}

// A refund WeChat ends otherwise than SUCCESS (the simulator told to end
// it so, as WeChat notifies it): abnormal (CHANGE) reaches the backend as
// refund.changed and leaves the refund CHANGE; closed (REFUNDCLOSE) as
// refund.closed, the refund REFUNDCLOSE and its amount refundable again.
func TestRefundEndingOtherwise(t *testing.T) {
	for _, tc := range []struct {
		end, event, state string
	}{
		{wxpaysim.RefundStatusChange, event.RefundChanged, ledger.RefundChange},
		{wxpaysim.RefundStatusClosed, event.RefundClosed, ledger.RefundClosed},
	} {
		t.Run(tc.end, func(t *testing.T) {
			e := newEnv(t, true, nil)
			ctx := context.Background()
			e.placePaid("ro1", 1000)
			if err := e.sim.EndNextRefunds(1, tc.end); err != nil {
				t.Fatal(err)
			}
			rr, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "ro1", OutRefundNo: "ro-1", TotalFee: 1000, RefundFee: 1000})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				if r, _ := e.store.GetRefund(ctx, mchID, "ro-1"); r != nil && r.State == tc.state {
					break
				}
				if time.Now().After(deadline) {
					r, _ := e.store.GetRefund(ctx, mchID, "ro-1")
					t.Fatalf("the refund never became %s: %+v", tc.state, r)
				}
				time.Sleep(5 * time.Millisecond)
			}
			ev, _, err := e.store.GetEvent(ctx, event.RefundID(mchID, rr.RefundID, tc.end))
			if err != nil || ev.Type != tc.event {
				t.Fatalf("its event: %+v, %v; want %s", ev, err, tc.event)
			}
			_, err = e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "ro1", OutRefundNo: "ro-2", TotalFee: 1000, RefundFee: 1000})
			if (err == nil) != (tc.end == wxpaysim.RefundStatusClosed) {
				t.Fatalf("the whole amount refunded again after a refund %s: %v", tc.end, err)
			}
		})
	}
}

// Refunds the reconciliation cannot settle (here: of a merchant no longer
// configured) go to the back of its queue: they do not hold up the others
// round after round (a round takes 20).
func TestReconcilerRefundQueueMoves(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	for i := range 21 {
		if err := e.store.PutRefund(ctx, &ledger.Refund{MchID: "19000000", OutRefundNo: fmt.Sprintf("gone-%02d", i), OutTradeNo: "x",
			TotalFee: 10, RefundFee: 1, State: ledger.RefundUnknown, CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(time.Second)
	// A refund of the configured merchant that WeChat never made: the
	// reconciliation forgets it once it gets to it.
	if err := e.store.PutRefund(ctx, &ledger.Refund{MchID: mchID, OutRefundNo: "never-made", OutTradeNo: "x",
		TotalFee: 10, RefundFee: 1, State: ledger.RefundUnknown, CreatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant}, Delay: 5 * time.Minute}
	e.clock.Add(6 * time.Minute)
	for round := range 3 {
		rc.Round(ctx, setup, time.Minute)
		e.clock.Add(time.Second)
		if _, err := e.store.GetRefund(ctx, mchID, "never-made"); errors.Is(err, ledger.ErrNotFound) {
			return // reached
		} else if round == 2 {
			t.Fatalf("after 3 rounds the refund behind 21 others was never settled: %v", err)
		}
	}
}

// leaseLostAfter is a reconciliation ledger whose lease is taken by
// another gateway after n renewals.
type leaseLostAfter struct {
	gateway.ReconcileLedger
	n     int
	calls int
}

func (l *leaseLostAfter) TryLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	l.calls++
	if l.calls > l.n {
		return false, nil
	}
	return l.ReconcileLedger.TryLease(ctx, name, holder, now, ttl)
}

// A round renews its lease before each order it checks, and stops when
// another gateway has taken it: two gateways never reconcile at once
// (before: a round outlived its lease when WeChat was slow).
func TestReconcilerRoundStopsWithItsLease(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	for _, no := range []string{"ls1", "ls2", "ls3"} {
		e.place(no, 100)
	}
	e.clock.Add(6 * time.Minute)
	// The lease is held for the round's start and its first order only.
	rc := gateway.NewReconciler(&leaseLostAfter{ReconcileLedger: e.store, n: 2}, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant}, Delay: 5 * time.Minute}
	rc.Round(ctx, setup, time.Minute)
	checked := 0
	for _, no := range []string{"ls1", "ls2", "ls3"} {
		o, err := e.store.GetOrder(ctx, mchID, no)
		if err != nil {
			t.Fatal(err)
		}
		if o.Checks > 0 {
			checked++
		}
	}
	if checked != 1 {
		t.Fatalf("%d orders checked by a round that held its lease for one, want 1", checked)
	}
}

// An expired order whose close WeChat answers "the payer is paying"
// (USERPAYING; APIv3: 202 USER_PAYING) is not closed: it may still be
// paid. It is asked about again shortly, and closed then.
func TestReconcilerLeavesAnOrderBeingPaid(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.place("up1", 100)
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	setup := &gateway.ReconcileSetup{Service: e.svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant},
		Delay: 5 * time.Minute, CloseExpired: true}
	e.clock.Add(2*time.Hour + time.Minute)
	e.sim.FailNext(wxpaysim.APICloseOrder, 1, "USERPAYING")
	rc.Round(ctx, setup, time.Minute)
	o, _ := e.store.GetOrder(ctx, mchID, "up1")
	if o.State == ledger.OrderClosed || o.NextCheckAt.After(e.clock.Now().Add(30*time.Second)) || o.NextCheckAt.IsZero() {
		t.Fatalf("an order being paid, after the round: %+v", o)
	}
	if so, _ := e.sim.Order(mchID, "up1"); so.State == wxpaysim.StateClosed {
		t.Fatal("WeChat's order was closed")
	}
	e.clock.Add(30 * time.Second)
	rc.Round(ctx, setup, time.Minute)
	if o, _ := e.store.GetOrder(ctx, mchID, "up1"); o.State != ledger.OrderClosed {
		t.Fatalf("after the payer gave up: %+v", o)
	}

	// Long past its expiry, "being paid" is asked about as any check:
	// not every 10 s without end.
	e.place("up2", 100)
	e.clock.Add(2*time.Hour + 15*time.Minute)
	e.sim.FailNext(wxpaysim.APICloseOrder, 1, "USERPAYING")
	rc.Round(ctx, setup, time.Minute)
	if o, _ := e.store.GetOrder(ctx, mchID, "up2"); o.State == ledger.OrderClosed || !o.NextCheckAt.After(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("an order long expired, still said to be paid: %+v", o)
	}
}

// A refund WeChat answered SYSTEMERROR (it may have made it), asked again
// with the same parameters as WeChat says, and refused the second time
// (a rate limit on the request under way): the outcome is unknown, so the
// refund stays recorded (UNKNOWN, to be settled by a query) and its
// number is not free for other amounts.
func TestRefundRefusedAfterSystemErrorIsKept(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	e.placePaid("rs1", 1000)
	e.sim.FailNext(wxpaysim.APIRefund, 1, "SYSTEMERROR")
	e.sim.FailNext(wxpaysim.APIRefund, 1, "FREQUENCY_LIMITED")
	_, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rs1", OutRefundNo: "rfs-1", TotalFee: 1000, RefundFee: 300})
	if ge := gateway.ErrorFor(err); ge.Status != http.StatusBadGateway {
		t.Fatalf("refund of unknown outcome: %v (%d %s)", err, ge.Status, ge.Code)
	}
	r, err := e.store.GetRefund(ctx, mchID, "rfs-1")
	if err != nil || r.State != ledger.RefundUnknown || r.RefundFee != 300 {
		t.Fatalf("the refund's record: %+v, %v", r, err)
	}
	if _, err := e.svc.Refund(ctx, e.merchant, &gateway.RefundRequest{OutTradeNo: "rs1", OutRefundNo: "rfs-1", TotalFee: 1000, RefundFee: 200}); gateway.ErrorFor(err).Status != http.StatusConflict {
		t.Fatalf("the number with other amounts: %v", err)
	}
}

// findings records what the reconciliation found.
type findings struct {
	mu  sync.Mutex
	got []string
}

func (*findings) OrderPlaced(string, string, string)                 {}
func (*findings) WeChatCalled(string, string, string, time.Duration) {}
func (*findings) NotificationTaken(string, string, string, string)   {}

func (f *findings) Reconciled(_, finding string) {
	f.mu.Lock()
	f.got = append(f.got, finding)
	f.mu.Unlock()
}

// A payment the reconciliation finds that disagrees with its order is
// forwarded as payment.mismatch and counted as such, not as "paid".
func TestReconcilerCountsAMismatchAsSuch(t *testing.T) {
	e := newEnv(t, true, nil)
	ctx := context.Background()
	obs := &findings{}
	svc := gateway.New(gateway.Config{Ledger: e.store, Now: e.clock.Now, ReconcileDelay: 5 * time.Minute, Observer: obs})
	// WeChat holds the order for 300 fen; the ledger's record says 900
	// (placed by another system under the same number, say).
	placer := gateway.New(gateway.Config{Now: e.clock.Now}) // no ledger
	resp, err := placer.PlaceOrder(ctx, e.merchant, &gateway.OrderRequest{OutTradeNo: "mm1", TotalFee: 300, Body: "b", TradeType: "APP"}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if err := e.store.PutOrder(ctx, &ledger.Order{MchID: mchID, OutTradeNo: "mm1", AppID: appID, TradeType: "APP", TotalFee: 900,
		ContentHash: "h", PrepayID: resp.PrepayID, State: ledger.OrderNotPay, CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour),
		NextCheckAt: now.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Pay(ctx, wxpaysim.PayOptions{PrepayID: resp.PrepayID, Lost: true}); err != nil {
		t.Fatal(err)
	}
	rc := gateway.NewReconciler(e.store, e.clock.Now)
	e.clock.Add(5 * time.Minute)
	rc.Round(ctx, &gateway.ReconcileSetup{Service: svc, Merchants: map[string]*gateway.Merchant{mchID: e.merchant}, Delay: 5 * time.Minute}, time.Minute)
	evs := e.eventsOf("mm1")
	if len(evs) != 1 || evs[0].Type != event.PaymentMismatch {
		t.Fatalf("events: %d, the first %s %s", len(evs), evs[0].Type, evs[0].Payload)
	}
	if !slices.Equal(obs.got, []string{"mismatch"}) {
		t.Fatalf("findings %v, want [mismatch]", obs.got)
	}
}
