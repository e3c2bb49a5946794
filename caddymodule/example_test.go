package caddymodule_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README's demo: Caddyfile.example as shipped, walked through as the
// README's curl commands do (on free ports instead of 8080 and 8081); then
// the same walk with the merchant switched to APIv3 as the file says (its
// "#v3 " lines uncommented): nothing the caller or the backend sees
// changes, except the decrypted resource under data.wechat.
func TestExampleDemoLoop(t *testing.T) {
	for _, v3 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v2", true: "v3"}[v3], func(t *testing.T) { testExampleDemoLoop(t, v3) })
	}
}

// startExampleDemo runs Caddyfile.example's demo as shipped (APIv3 with its
// "#v3 " lines uncommented) on free ports instead of 8080, 8081 and 8443,
// and returns the gateway's and the simulator's base URLs.
func startExampleDemo(t *testing.T, v3 bool) (gwURL, simURL string) {
	t.Helper()
	cfg := readExample(t)
	if v3 {
		if !strings.Contains(cfg, "#v3 api_version v3") {
			t.Fatal("Caddyfile.example has no #v3 lines")
		}
		cfg = strings.ReplaceAll(cfg, "#v3 ", "")
	}
	gw, sim := freePort(t), freePort(t)
	tlsSim := freePort(t)
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", gw))
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", sim))
	cfg = strings.ReplaceAll(cfg, "localhost:8443", fmt.Sprintf("localhost:%d", tlsSim))
	cfg = strings.ReplaceAll(cfg, " demo/", " ../demo/")
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "xdg")) // the ledger's default place
	cfg = strings.Replace(cfg, "{\n", fmt.Sprintf("{\n\tadmin off\n\tstorage file_system %s\n", filepath.Join(dir, "data")), 1)
	loadCaddyfile(t, cfg)
	t.Cleanup(func() { _ = caddy.Stop() })
	return fmt.Sprintf("http://127.0.0.1:%d", gw), fmt.Sprintf("http://127.0.0.1:%d", sim)
}

func testExampleDemoLoop(t *testing.T, v3 bool) {
	gwURL, simURL := startExampleDemo(t, v3)
	// The README's first command runs the demo: it must not need root,
	// which a port below 1024 (Caddy's http->https redirects on 80) would.
	if ports := privilegedListens(t); len(ports) > 0 {
		t.Fatalf("the demo listens on ports %v, which a user without root cannot open", ports)
	}
	// 1. Place an order, as the README does.
	req, _ := http.NewRequest(http.MethodPost, gwURL+"/wxpay/orders", strings.NewReader(
		`{"out_trade_no":"demo1001","total_fee":1,"body":"演示商品","trade_type":"JSAPI","openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}`))
	req.Header.Set("Authorization", "Bearer demo-api-token-change-me")
	status, out := doJSON(t, req)
	if status != 200 || out["prepay_id"] == nil || out["pay_params"] == nil {
		t.Fatalf("place order: %d %v", status, out)
	}
	// 2. Pay it in the simulator.
	req, _ = http.NewRequest(http.MethodPost, simURL+"/sim/pay", strings.NewReader(`{"out_trade_no":"demo1001"}`))
	if status, out := doJSON(t, req); status != 200 || out["transaction_id"] == nil {
		t.Fatalf("pay: %d %v", status, out)
	}
	// 3. See the verified event at the stand-in backend.
	var events []shownEvent
	waitFor(t, "the event at the stand-in backend", 5*time.Second, func() bool {
		resp, err := http.Get(simURL + "/backend/events")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return json.Unmarshal(body, &events) == nil && len(events) > 0
	})
	ev := events[0]
	if !ev.Verified || ev.Event.Type != "payment.succeeded" || ev.Event.Data["out_trade_no"] != "demo1001" || ev.Event.Data["total_fee"] != float64(1) {
		t.Fatalf("stand-in backend got %+v", ev)
	}
	if _, has := ev.Event.Data["wechat"]; has != v3 {
		t.Fatalf("data.wechat present: %v on v3: %v", has, v3)
	}
	if pp, _ := out["pay_params"].(map[string]any); (pp["signType"] == "RSA") != v3 {
		t.Fatalf("pay_params signType %v on v3: %v", pp["signType"], v3)
	}

	// The rest of the README's walk: query, refund over mutual TLS, the
	// refund's event.
	token := "Bearer demo-api-token-change-me"
	req, _ = http.NewRequest(http.MethodGet, gwURL+"/wxpay/orders/demo1001", nil)
	req.Header.Set("Authorization", token)
	if status, out := doJSON(t, req); status != 200 || out["trade_state"] != "SUCCESS" {
		t.Fatalf("query: %d %v", status, out)
	}
	req, _ = http.NewRequest(http.MethodPost, gwURL+"/wxpay/refunds", strings.NewReader(
		`{"out_trade_no":"demo1001","out_refund_no":"refund1001","total_fee":1,"refund_fee":1,"refund_desc":"演示退款"}`))
	req.Header.Set("Authorization", token)
	if status, out := doJSON(t, req); status != 200 || out["refund_id"] == nil {
		t.Fatalf("refund: %d %v", status, out)
	}
	waitFor(t, "the refund event at the stand-in backend", 15*time.Second, func() bool {
		resp, err := http.Get(simURL + "/backend/events")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return json.Unmarshal(body, &events) == nil && len(events) == 2
	})
	if ev := events[1]; !ev.Verified || ev.Event.Type != "refund.succeeded" || ev.Event.Data["out_refund_no"] != "refund1001" {
		t.Fatalf("stand-in backend got %+v", ev)
	}
}

// The PRODUCTION parts of Caddyfile.example, uncommented and with the DEMO
// parts removed, adapt and provision (with the secrets in the environment).
func TestExampleProductionConfig(t *testing.T) {
	var lines []string
	demo := false
	for _, line := range strings.Split(readExample(t), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "# ---- DEMO"):
			demo = true
		case strings.HasPrefix(trimmed, "# ---- END DEMO"):
			demo = false
		case demo:
		default:
			if i := strings.Index(line, "#|"); i >= 0 {
				line = line[:i] + line[i+2:]
			}
			lines = append(lines, line)
		}
	}
	cfg := strings.Join(lines, "\n")
	if strings.Contains(cfg, "wxpay_simulator") || strings.Contains(cfg, "insecure_notify_url") || !strings.Contains(cfg, "pay.example.com {") {
		t.Fatalf("the production config still has demo parts or lacks the site:\n%s", cfg)
	}
	t.Setenv("WXPAY_MCH_ID", "1900000109")
	t.Setenv("WXPAY_APP_ID", "wxd930ea5d5a258f4f,wx2421b1c4370ec43b")
	t.Setenv("WXPAY_API_KEY", "192006250b4c09247ec02edce69f6a2d")
	t.Setenv("WXPAY_UPSTREAM_SECRET", "whsec-0123456789abcdef")
	t.Setenv("WXPAY_API_TOKEN", "tok-0123456789abcdef")
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cfg)
	}
	// The checkout route wraps the reverse_proxy, and the gateway's routes
	// come before the site's catch-all reverse_proxy.
	order := regexp.MustCompile(`"handler":"(wxpay|wxpay_checkout|reverse_proxy)"`).FindAllStringSubmatch(string(js), -1)
	var got []string
	for _, m := range order {
		got = append(got, m[1])
	}
	if want := "wxpay wxpay_checkout reverse_proxy reverse_proxy"; strings.Join(got, " ") != want {
		t.Errorf("handler order %v, want %s", got, want)
	}
	var c caddy.Config
	if err := json.Unmarshal(js, &c); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&c); err != nil {
		t.Fatalf("the production config does not provision: %v", err)
	}
}

// The directives need no order line: a site's respond or reverse_proxy
// written first does not shadow them.
func TestDirectiveOrder(t *testing.T) {
	cfg := `{
	wxpay {
		api_token tok-0123456789abcdef
	}
}
example.com {
	respond "hi"
	reverse_proxy 127.0.0.1:3000
	wxpay_checkout
	wxpay
}`
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	order := regexp.MustCompile(`"handler":"([a-z_]+)"`).FindAllStringSubmatch(string(js), -1)
	var got []string
	for _, m := range order {
		got = append(got, m[1])
	}
	if want := "subroute wxpay wxpay_checkout static_response reverse_proxy"; strings.Join(got, " ") != want {
		t.Fatalf("handlers in order %v, want %s", got, want)
	}
}

// privilegedListens returns the ports below 1024 this process listens on
// (Linux: its socket inodes found among /proc/net/tcp{,6}'s listeners);
// nil where /proc cannot tell.
func privilegedListens(t *testing.T) []int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		if link, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(link, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !mine[f[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if port, err := strconv.ParseUint(hexPort, 16, 16); err == nil && port < 1024 {
				ports = append(ports, int(port))
			}
		}
	}
	return ports
}
