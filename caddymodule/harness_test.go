package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-wxpay/caddy-wxpay/caddymodule"
	_ "github.com/caddy-wxpay/caddy-wxpay/caddymodule/simulator"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// Test credentials. The key is the one of WeChat's signature example.
const (
	testMchID   = "10000100"
	testKey     = "192006250b4c09247ec02edce69f6a2d"
	testHMACMch = "10000200"
	testHMACKey = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
	testAppID   = "wxd930ea5d5a258f4f"
	testAppID2  = "wx2421b1c4370ec43b"
	testToken   = "test-token-3f9a8b7c6d5e4f3a"
	testSecret  = "whsec-test-0123456789abcdef"
	// testAppSecret is the mini program's secret (testAppID's).
	testAppSecret = "appsecretofthetestminiprogram0a1"
	caddyfileTop  = "{\n\tadmin %s\n\tpersist_config off\n\tstorage file_system %s\n\tlog {\n\t\toutput file %s\n\t\tlevel DEBUG\n\t}\n"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// received is one request the backend got.
type received struct {
	Header http.Header
	Body   []byte
}

// backend is a real HTTP server standing in for the merchant's backend. It
// records every request and answers with status() (200 by default).
type backend struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	status   func(n int) int // n counts requests from 1
	handler  http.HandlerFunc
}

func newBackend(t testing.TB) *backend {
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.requests = append(b.requests, received{Header: r.Header.Clone(), Body: body})
		n := len(b.requests)
		status, handler := b.status, b.handler
		b.mu.Unlock()
		if handler != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			handler(w, r)
			return
		}
		code := http.StatusOK
		if status != nil {
			code = status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) got() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.requests...)
}

func (b *backend) setStatus(f func(n int) int) {
	b.mu.Lock()
	b.status = f
	b.mu.Unlock()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gateway is a real Caddy, in process, with the module loaded from a
// Caddyfile, next to a simulator and a backend on real sockets.
type gateway struct {
	t       testing.TB
	base    string // the gateway site, http://127.0.0.1:port
	sim     *wxpaysim.Simulator
	simURL  string
	backend *backend
	logFile string
	dir     string
	admin   string // the admin endpoint's base URL, when enabled
	cfg     string // the Caddyfile loaded
	// simAhead moves the simulator's clock ahead (nanoseconds), e.g. to
	// the day after a payment, when its bill is ready.
	simAhead atomic.Int64
}

type gatewayOptions struct {
	timeout   string // merchant timeout
	extraSite string // more directives in the gateway site
	extraTop  string // more sites
	ack       string // "upstream" for the no-ledger mode; default stored
	admin     bool   // serve Caddy's admin endpoint (g.admin)
	adminOpts string // options of the admin endpoint ({addr} is its address)
	// v3 switches the default merchant to APIv3: "public_key",
	// "certificates" or "migration" (both); the simulator signs in that
	// mode. "" keeps API v2.
	v3 string
	// simV3 is the simulator's signing mode when it is not v3's (a
	// gateway configured for the migration, WeChat already in public key
	// mode).
	simV3    string
	upstream string // more options in the upstream block
	global   string // more options in the wxpay block
}

func startGateway(t *testing.T, opts gatewayOptions) *gateway {
	t.Helper()
	g := &gateway{t: t, dir: t.TempDir()}
	g.logFile = filepath.Join(g.dir, "caddy.log")
	g.sim = wxpaysim.New(wxpaysim.Config{
		Merchants: []wxpaysim.Merchant{
			{MchID: testMchID, Key: testKey, AppIDs: []string{testAppID, testAppID2}, V3: testV3Sim(t)},
			{MchID: testHMACMch, Key: testHMACKey, AppIDs: []string{testAppID}},
		},
		TimeScale:  0.001,
		ClientCAs:  testPKI.caPool,
		Now:        func() time.Time { return time.Now().Add(time.Duration(g.simAhead.Load())) },
		AppSecrets: map[string]string{testAppID: testAppSecret},
	})
	t.Setenv("WXPAY_TEST_APP_SECRET", testAppSecret)
	// Served over TLS like WeChat, so that refunds use mutual TLS.
	simSrv := httptest.NewUnstartedServer(g.sim)
	simSrv.TLS = g.sim.TLSConfig(testPKI.serverCert)
	simSrv.StartTLS()
	t.Cleanup(func() { g.sim.Close(); simSrv.Close() })
	g.simURL = simSrv.URL
	g.backend = newBackend(t)
	port := freePort(t)
	g.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	timeout := opts.timeout
	if timeout == "" {
		timeout = "3s"
	}
	t.Setenv("WXPAY_TEST_API_KEY", testKey)
	keyFile := filepath.Join(g.dir, "hmac.key")
	if err := os.WriteFile(keyFile, []byte(testHMACKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_DATA_HOME", filepath.Join(g.dir, "xdg"))
	admin := "off"
	if opts.admin {
		admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		g.admin = "http://" + admin
		if opts.adminOpts != "" {
			admin += " {\n" + strings.ReplaceAll(opts.adminOpts, "{addr}", admin) + "\n}"
		}
	}
	if opts.v3 != "" {
		mode := opts.v3
		if opts.simV3 != "" {
			mode = opts.simV3
		}
		if err := g.sim.SetV3Signing(testMchID, mode != "certificates", mode != "public_key"); err != nil {
			t.Fatal(err)
		}
		t.Setenv("WXPAY_TEST_API_V3_KEY", testV3Key)
	}
	storage := "storage sqlite " + filepath.Join(g.dir, "ledger.db")
	if opts.ack == "upstream" {
		storage = "ack upstream"
	}
	cfg := fmt.Sprintf(caddyfileTop, admin, filepath.Join(g.dir, "data"), g.logFile) + fmt.Sprintf(`	wxpay {
		merchant default {
			mch_id      %[1]s
			app_id      %[2]s %[3]s
			api_key     {env.WXPAY_TEST_API_KEY}
			notify_url  %[4]s/wxpay/notify
			insecure_notify_url
			endpoint    %[5]s
			timeout     %[6]s
			client_cert %[16]s %[17]s
			app_secret  %[2]s {env.WXPAY_TEST_APP_SECRET}
			sns_endpoint %[5]s
			oauth_endpoint %[5]s
			%[19]s
		}
		merchant hmac {
			mch_id      %[7]s
			app_id      %[2]s
			api_key     {file.%[8]s}
			sign_type   HMAC-SHA256
			notify_sign_type HMAC-SHA256
			notify_url  %[4]s/hmac/notify
			insecure_notify_url
			endpoint    %[5]s
			timeout     %[6]s
		}
		upstream %[9]s/events {
			secret %[10]s
			%[14]s
		}
		api_token %[11]s
		%[15]s
		%[18]s
	}
}

%[4]s {
	wxpay
	wxpay hmac {
		base_path /hmac
	}
	%[12]s
	respond "site" 200
}
%[13]s
`, testMchID, testAppID, testAppID2, g.base, g.simURL, timeout, testHMACMch, keyFile, g.backend.URL, testSecret, testToken, opts.extraSite, opts.extraTop, opts.upstream, storage,
		testPKI.clientCert[testMchID][0], testPKI.clientCert[testMchID][1], opts.global, v3Lines(opts.v3))
	g.cfg = cfg
	loadCaddyfile(t, cfg)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
		checkNoSecretsIn(t, g.logFile)
	})
	return g
}

// The demo's APIv3 credentials (demo/gen_v3.sh made them).
const (
	testV3Key    = "caddywxpaydemoapiv3key0123456789"
	testPubKeyID = "PUB_KEY_ID_0110000100202612020000000000000001"
)

// v3Lines are the default merchant's APIv3 lines in a mode ("" none).
func v3Lines(mode string) string {
	if mode == "" {
		return ""
	}
	lines := `api_version v3
			api_v3_key  {env.WXPAY_TEST_API_V3_KEY}
			private_key ../demo/v3/apiclient_key.pem
			merchant_cert ../demo/v3/apiclient_cert.pem`
	if mode != "certificates" {
		lines += "\n\t\t\twechatpay_public_key " + testPubKeyID + " ../demo/v3/pub_key.pem"
	}
	if mode != "public_key" {
		lines += "\n\t\t\tplatform_certificates auto"
	}
	return lines
}

// testV3Sim is the simulator's APIv3 side of the default merchant: the
// demo's keys, in every mode (startGateway picks the mode).
func testV3Sim(t testing.TB) *wxpaysim.MerchantV3 {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "demo", "v3", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cert, err := wxpayv3.ParseCertificate(read("apiclient_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wxpayv3.ParsePrivateKey(read("sim_pub_key_private.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pcert, err := wxpayv3.ParseCertificate(read("sim_platform_cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pkey, err := wxpayv3.ParsePrivateKey(read("sim_platform_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &wxpaysim.MerchantV3{APIv3Key: testV3Key, MerchantCertificate: cert, PublicKeyID: testPubKeyID, PublicKey: pub,
		PlatformCertificates: []wxpaysim.PlatformCertificate{{Certificate: pcert, Key: pkey}}, PublicKeyShare: 0.5}
}

// loadCaddyfile adapts a Caddyfile and runs it.
func loadCaddyfile(t testing.TB, cfg string) {
	t.Helper()
	if err := tryLoadCaddyfile(cfg); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
}

func tryLoadCaddyfile(cfg string) error {
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, warnings, err := adapter.Adapt([]byte(cfg), nil)
	if err != nil {
		return fmt.Errorf("adapt: %w", err)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") {
			return fmt.Errorf("adapt warning: %s", w.Message)
		}
	}
	err = caddy.Load(js, true)
	// The configuration Caddy stopped has closed its idle keep-alive
	// connections; the client may not have read their end yet, and would
	// send the next request on one (a POST, which it does not retry, then
	// fails with EOF). A client after a reload connects afresh.
	http.DefaultClient.CloseIdleConnections()
	return err
}

// checkNoSecretsIn fails the test when a secret appears in Caddy's log.
func checkNoSecretsIn(t testing.TB, file string) {
	t.Helper()
	logs, err := os.ReadFile(file)
	if err != nil {
		t.Errorf("reading caddy's log: %v", err)
		return
	}
	if len(logs) == 0 {
		t.Errorf("caddy's log is empty: the secret check would prove nothing")
	}
	for _, s := range append([]string{testKey, testHMACKey, testToken, testSecret, testV3Key, testAppSecret, "PRIVATE KEY"}, privateKeyLines(t)...) {
		if bytes.Contains(logs, []byte(s)) {
			t.Errorf("a secret (%d chars, starting %.4s) appears in caddy's log", len(s), s)
		}
	}
	// Full openids are personal data: never logged.
	if bytes.Contains(logs, []byte(testOpenID)) {
		t.Errorf("a full openid appears in caddy's log")
	}
}

// testOpenID is the simulator's payer.
const testOpenID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

// privateKeyLines are the base64 lines of the demo's APIv3 private key
// (the tests' merchant key): none may appear in a log.
func privateKeyLines(t testing.TB) []string {
	b, err := os.ReadFile("../demo/v3/apiclient_key.pem")
	if err != nil {
		t.Errorf("reading the demo's private key: %v", err)
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

// post sends a JSON body with the API token.
func (g *gateway) post(path, token string, body any) (int, map[string]any) {
	g.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(http.MethodPost, g.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return doJSON(g.t, req)
}

func doJSON(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer %d is not JSON: %q", req.Method, req.URL, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// errorOf returns the code and message of a gateway error answer.
func errorOf(out map[string]any) (code, message string) {
	e, _ := out["error"].(map[string]any)
	code, _ = e["code"].(string)
	message, _ = e["message"].(string)
	return code, message
}

// signedDoc signs p for the simulator-side merchant and encodes it.
func signedDoc(t testing.TB, p wxpay.Params, key wxpay.APIKey, st wxpay.SignType) []byte {
	t.Helper()
	sign, err := wxpay.Sign(p, key, st)
	if err != nil {
		t.Fatal(err)
	}
	p = append(p.Clone(), wxpay.Param{Name: "sign", Value: sign})
	doc, err := wxpay.EncodeXML(p)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
