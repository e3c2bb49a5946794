package caddymodule_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// scrape is the admin endpoint's /metrics, as samples keyed by name and
// labels (see sample).
type scrape map[string]float64

func scrapeMetrics(t *testing.T, g *gateway) scrape {
	t.Helper()
	status, body := g.adminDo(t, http.MethodGet, "/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: %d %s", status, body)
	}
	out := scrape{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "wxpay_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// sample names a sample as the exposition format prints it: labels in
// alphabetical order (as given).
func sample(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i] + "=" + strconv.Quote(labels[i+1]))
	}
	b.WriteString("}")
	return b.String()
}

// The metrics count what an integration run did: orders placed and
// refused, calls to WeChat, notifications stored, duplicated and refused,
// deliveries, and the outbox by state; no label carries an order number.
func TestMetricsCountWhatHappened(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	before := scrapeMetrics(t, g)

	g.placeAndPay(t, "metrics1", 11, wxpaysim.PayOptions{})
	g.placeAndPay(t, "metrics2", 12, wxpaysim.PayOptions{})
	// A placement refused before WeChat (no amount) and one WeChat
	// refuses.
	if status, _ := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "metrics3", "body": "b", "trade_type": "APP"}); status != 400 {
		t.Fatalf("an order without an amount: %d", status)
	}
	g.sim.FailNext("unifiedorder", 1, "SYSTEMERROR")
	if status, _ := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "metrics4", "total_fee": 1, "body": "b", "trade_type": "APP"}); status < 500 {
		t.Fatalf("an order WeChat refused: %d", status)
	}
	for _, no := range []string{"metrics1", "metrics2"} {
		waitFor(t, "WeChat's acknowledgement", 5*time.Second, func() bool { return acked(g.sim, no) })
	}
	waitFor(t, "both delivered", 5*time.Second, func() bool { return len(g.backend.got()) >= 2 })
	// WeChat again with the first (a duplicate), and a forged one.
	body := notificationFor(g.sim, "metrics1").Body
	if status, reply := g.postRaw("/wxpay/notify", "text/xml", body); status != 200 || !bytes.Contains(reply, []byte("SUCCESS")) {
		t.Fatalf("duplicate: %d %s", status, reply)
	}
	forged := bytes.Replace(body, []byte("<total_fee><![CDATA[11]]></total_fee>"), []byte("<total_fee><![CDATA[1]]></total_fee>"), 1)
	if bytes.Equal(forged, body) {
		t.Fatalf("the notification has no total_fee 11: %s", body)
	}
	if status, _ := g.postRaw("/wxpay/notify", "text/xml", forged); status == 200 {
		t.Fatal("a forged notification was taken")
	}
	// A delivery attempt is counted once the backend answered, and the
	// ledger records it a moment later (wxpay_outbox_events reads the
	// ledger): wait for both.
	var after scrape
	waitFor(t, "the deliveries counted and recorded", 5*time.Second, func() bool {
		after = scrapeMetrics(t, g)
		return after[sample("wxpay_delivery_attempt_duration_seconds_count", "outcome", "delivered")]-
			before[sample("wxpay_delivery_attempt_duration_seconds_count", "outcome", "delivered")] >= 2 &&
			after[sample("wxpay_outbox_events", "state", "pending")] == 0
	})

	for _, c := range []struct {
		sample string
		want   float64
	}{
		{sample("wxpay_orders_total", "merchant", "default", "outcome", "ok", "trade_type", "APP"), 2},
		{sample("wxpay_orders_total", "merchant", "default", "outcome", "INVALID_REQUEST", "trade_type", "unknown"), 1},
		{sample("wxpay_orders_total", "merchant", "default", "outcome", "SYSTEMERROR", "trade_type", "APP"), 1},
		{sample("wxpay_wechat_request_duration_seconds_count", "api", "unifiedorder", "merchant", "default", "outcome", "ok"), 2},
		{sample("wxpay_wechat_request_duration_seconds_count", "api", "unifiedorder", "merchant", "default", "outcome", "SYSTEMERROR"), 1},
		{sample("wxpay_notifications_total", "kind", "payment", "merchant", "default", "reason", "", "result", "stored"), 2},
		{sample("wxpay_notifications_total", "kind", "payment", "merchant", "default", "reason", "", "result", "duplicate"), 1},
		{sample("wxpay_notifications_total", "kind", "payment", "merchant", "default", "reason", "invalid notification", "result", "refused"), 1},
		{sample("wxpay_delivery_attempt_duration_seconds_count", "outcome", "delivered"), 2},
	} {
		if got := after[c.sample] - before[c.sample]; got != c.want {
			t.Errorf("%s went up by %v, want %v", c.sample, got, c.want)
			for s := range after {
				if strings.HasPrefix(s, "wxpay_orders_total") {
					t.Logf("  %s %v", s, after[s])
				}
			}
		}
	}
	// The outbox of this test's ledger, as it stands.
	if got := after[sample("wxpay_outbox_events", "state", "delivered")]; got != 2 {
		t.Errorf("wxpay_outbox_events{state=delivered} = %v, want 2", got)
	}
	if got := after[sample("wxpay_outbox_events", "state", "pending")]; got != 0 {
		t.Errorf("wxpay_outbox_events{state=pending} = %v, want 0", got)
	}
	// Bounded labels: no order number anywhere.
	for s := range after {
		if strings.Contains(s, "metrics1") || strings.Contains(s, "metrics4") {
			t.Errorf("a label carries an order number: %s", s)
		}
	}
}

// postRaw posts body as it is to the gateway and returns the answer.
func (g *gateway) postRaw(path, contentType string, body []byte) (int, []byte) {
	g.t.Helper()
	resp, err := http.Post(g.base+path, contentType, bytes.NewReader(body))
	if err != nil {
		g.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
