package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// caddyBinary builds cmd/caddy (Caddy with this module) once per test run.
func caddyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-wxpay-bin")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", binary, "../cmd/caddy").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../cmd/caddy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// caddyProcess is a real caddy process running a Caddyfile.
type caddyProcess struct {
	t      *testing.T
	bin    string
	config string
	env    []string
	cmd    *exec.Cmd
	log    *os.File
}

func (p *caddyProcess) start(waitURL string) {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "run", "--config", p.config, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	waitFor(p.t, "caddy to serve", 30*time.Second, func() bool {
		resp, err := http.Get(waitURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

func (p *caddyProcess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

func (p *caddyProcess) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.cmd = nil
}

// delivery is one attempt the backend saw.
type delivery struct {
	id, tx string
	status int
}

// TestCrashMidBurst: a real Caddy process takes a burst of notifications
// from the simulator while the backend flaps, is killed with SIGKILL in the
// middle, and started again. Every notification WeChat saw acknowledged
// reaches the backend, and no transaction is delivered under two ids.
func TestCrashMidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a caddy process")
	}
	const n = 500
	bin := caddyBinary(t)
	dir := t.TempDir()

	var mu sync.Mutex
	var seen []delivery
	start := time.Now()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			Data struct {
				TransactionID string `json:"transaction_id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		// Flap: down one 300 ms slice in three.
		status := http.StatusOK
		if (time.Since(start).Milliseconds()/300)%3 == 0 {
			status = http.StatusServiceUnavailable
		}
		mu.Lock()
		seen = append(seen, delivery{id: r.Header.Get("Wxpay-Event-Id"), tx: ev.Data.TransactionID, status: status})
		mu.Unlock()
		w.WriteHeader(status)
	}))
	defer backend.Close()

	sim := wxpaysim.New(wxpaysim.Config{
		Merchants: []wxpaysim.Merchant{{MchID: testMchID, Key: testKey, AppIDs: []string{testAppID}}},
		TimeScale: 0.001,
	})
	simSrv := httptest.NewServer(sim)
	defer func() { sim.Close(); simSrv.Close() }()

	gw := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	cfgFile := filepath.Join(dir, "Caddyfile")
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	storage file_system %s
	wxpay {
		merchant default {
			mch_id      %s
			app_id      %s
			api_key     %s
			notify_url  %s/wxpay/notify
			insecure_notify_url
			endpoint    %s
		}
		upstream %s/events {
			secret %s
			retry_max_interval 500ms
			concurrency 16
		}
		api_token %s
		storage sqlite %s
	}
}
%s {
	wxpay
}
`, freePort(t), filepath.Join(dir, "data"), testMchID, testAppID, testKey, gw, simSrv.URL, backend.URL, testSecret, testToken, filepath.Join(dir, "ledger.db"), gw)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	defer checkNoSecretsIn(t, logFile.Name())
	proc := &caddyProcess{t: t, bin: bin, config: cfgFile, log: logFile,
		env: []string{"XDG_DATA_HOME=" + filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg-config")}}
	proc.start(gw + "/")
	defer proc.stop()

	// Place the orders through the gateway, so that it knows them.
	g := &gateway{t: t, base: gw}
	prepay := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			status, out := g.post("/wxpay/orders", testToken, map[string]any{
				"out_trade_no": fmt.Sprintf("crash%04d", i), "total_fee": 100 + i, "body": "b", "trade_type": "APP"})
			if status != 200 {
				t.Errorf("order %d: %d %v", i, status, out)
				return
			}
			prepay[i] = out["prepay_id"].(string)
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	ackedCount := func() (acked int, ackedTx map[string]bool) {
		ackedTx = map[string]bool{}
		for _, r := range sim.Notifications() {
			if r.Acknowledged {
				acked++
				ackedTx[r.TransactionID] = true
			}
		}
		return acked, ackedTx
	}
	// The burst: every order paid back to back, notifications in flight;
	// a third of the way through, SIGKILL. The rest of the burst meets a
	// dead gateway, and WeChat's retries find the restarted one.
	for i := 0; i < n; i++ {
		if i == n/3 {
			// Some acknowledged, the latest still in flight.
			waitFor(t, "the first notifications acknowledged", 30*time.Second, func() bool { a, _ := ackedCount(); return a >= n/6 })
			proc.kill()
		}
		if _, err := sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: prepay[i]}); err != nil {
			t.Fatalf("pay %d: %v", i, err)
		}
	}
	atKill, _ := ackedCount()
	t.Logf("SIGKILL with %d of %d notifications acknowledged", atKill, n)
	if atKill == 0 || atKill >= n {
		t.Fatal("the kill did not come mid-burst: nothing was tested")
	}

	proc.start(gw + "/")
	waitFor(t, "every notification acknowledged", 120*time.Second, func() bool { a, _ := ackedCount(); return a == n })
	_, ackedTx := ackedCount()
	waitFor(t, "every acknowledged payment delivered", 120*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		ok := map[string]bool{}
		for _, d := range seen {
			if d.status == 200 {
				ok[d.tx] = true
			}
		}
		for tx := range ackedTx {
			if !ok[tx] {
				return false
			}
		}
		return true
	})

	// The backend's record, read under its lock and released at once: the
	// gateway may still be delivering again (an event the killed process
	// sent but had not recorded), and the backend must keep answering.
	mu.Lock()
	idsOf := map[string]map[string]bool{}
	for _, d := range seen {
		if idsOf[d.tx] == nil {
			idsOf[d.tx] = map[string]bool{}
		}
		idsOf[d.tx][d.id] = true
	}
	mu.Unlock()
	for tx, ids := range idsOf {
		if len(ids) != 1 {
			t.Errorf("transaction %s was delivered under %d event ids", tx, len(ids))
		}
	}
	if len(idsOf) != n {
		t.Errorf("the backend saw %d transactions, want %d", len(idsOf), n)
	}

	// The operator's view agrees: nothing pending or dead.
	var out []byte
	defer func() {
		if t.Failed() {
			t.Logf("last status: %s", out)
			// What the gateway logged at warn level or worse, to say why.
			b, _ := os.ReadFile(logFile.Name())
			var lines []string
			for _, line := range bytes.Split(b, []byte("\n")) {
				if bytes.Contains(line, []byte(`"level":"error"`)) || bytes.Contains(line, []byte(`"level":"warn"`)) {
					lines = append(lines, string(line))
				}
			}
			t.Logf("the gateway logged %d warnings and errors; the last: %s", len(lines), strings.Join(lines[max(0, len(lines)-8):], "\n"))
		}
	}()
	waitFor(t, "the ledger to show every event delivered", 30*time.Second, func() bool {
		var err error
		out, err = exec.Command(bin, "wxpay", "status", "--config", cfgFile, "--adapter", "caddyfile").Output()
		if err != nil {
			t.Fatalf("caddy wxpay status: %v\n%s", err, out)
		}
		var status struct {
			Events map[string]int `json:"events"`
		}
		if err := json.Unmarshal(out, &status); err != nil {
			t.Fatalf("caddy wxpay status: %s", out)
		}
		return status.Events["delivered"] == n && status.Events["pending"] == 0 && status.Events["dead"] == 0
	})
	if bytes.Contains(out, []byte(testKey)) {
		t.Fatal("the status shows the key")
	}
	// A stray argument is refused, and nothing is paused.
	if out, err := exec.Command(bin, "wxpay", "pause", "now", "--config", cfgFile, "--adapter", "caddyfile").CombinedOutput(); err == nil || !bytes.Contains(out, []byte("takes 0 argument")) {
		t.Fatalf("caddy wxpay pause now: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "wxpay", "status", "--config", cfgFile, "--adapter", "caddyfile").Output(); err != nil || !bytes.Contains(out, []byte(`"paused": false`)) {
		t.Fatalf("caddy wxpay status after a refused pause: %v\n%s", err, out)
	}
}

// TestRequestsDuringStart: orders and notifications already arriving while
// a real Caddy process starts (its HTTP server may listen before the wxpay
// app has opened its ledger) are served after the ledger is open: none is
// answered from a half-started gateway, every order answered 200 is in the
// ledger, every notification answered SUCCESS is delivered, and a 503 says
// when to retry.
func TestRequestsDuringStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a caddy process")
	}
	bin := caddyBinary(t)
	dir := t.TempDir()
	backend := newBackend(t)
	sim := wxpaysim.New(wxpaysim.Config{Merchants: []wxpaysim.Merchant{{MchID: testMchID, Key: testKey, AppIDs: []string{testAppID}}}})
	simSrv := httptest.NewServer(sim)
	defer func() { sim.Close(); simSrv.Close() }()
	gw := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ledgerPath := filepath.Join(dir, "ledger.db")
	cfgFile := filepath.Join(dir, "Caddyfile")
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
	wxpay {
		merchant default {
			mch_id      %s
			app_id      %s
			api_key     %s
			notify_url  %s/wxpay/notify
			insecure_notify_url
			endpoint    %s
		}
		upstream %s {
			secret %s
		}
		api_token %s
		storage sqlite %s
	}
}
%s {
	wxpay
}
`, filepath.Join(dir, "data"), testMchID, testAppID, testKey, gw, simSrv.URL, backend.URL, testSecret, testToken, ledgerPath, gw)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "caddy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	// The clients start first, and keep trying until the port answers.
	const workers = 8
	type answer struct {
		kind, no string
		status   int
		body     string
		retry    string
	}
	answers := make(chan answer, 1000)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			client := &http.Client{Timeout: 20 * time.Second}
			for i := 0; i < 10; i++ {
				kind, no := "order", fmt.Sprintf("start%d-%d", w, i)
				var req *http.Request
				if i%2 == 1 {
					kind = "notify"
					doc := signedDoc(t, wxpay.Params{{Name: "return_code", Value: "SUCCESS"}, {Name: "result_code", Value: "SUCCESS"},
						{Name: "appid", Value: testAppID}, {Name: "mch_id", Value: testMchID}, {Name: "nonce_str", Value: "n"},
						{Name: "out_trade_no", Value: no}, {Name: "transaction_id", Value: fmt.Sprintf("42000000000000000000%02d%02d", w, i)},
						{Name: "total_fee", Value: "100"}, {Name: "trade_type", Value: "APP"}}, testKey, wxpay.SignTypeMD5)
					req, _ = http.NewRequest(http.MethodPost, gw+"/wxpay/notify", bytes.NewReader(doc))
				} else {
					js, _ := json.Marshal(map[string]any{"out_trade_no": no, "total_fee": 100, "body": "b", "trade_type": "APP"})
					req, _ = http.NewRequest(http.MethodPost, gw+"/wxpay/orders", bytes.NewReader(js))
					req.Header.Set("Authorization", "Bearer "+testToken)
				}
				for {
					resp, err := client.Do(req.Clone(context.Background()))
					if err != nil { // not listening yet
						time.Sleep(2 * time.Millisecond)
						if req.GetBody != nil {
							req.Body, _ = req.GetBody()
						}
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					answers <- answer{kind, no, resp.StatusCode, string(b), resp.Header.Get("Retry-After")}
					break
				}
			}
		})
	}
	proc := &caddyProcess{t: t, bin: bin, config: cfgFile, log: logFile,
		env: []string{"XDG_DATA_HOME=" + filepath.Join(dir, "xdg-data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg-config")}}
	proc.start(gw + "/")
	wg.Wait()
	close(answers)
	var orders []string
	notified := 0
	for a := range answers {
		switch {
		case a.status == http.StatusServiceUnavailable && a.retry == "":
			t.Errorf("%s %s: 503 without Retry-After", a.kind, a.no)
		case a.kind == "order" && a.status == 200:
			orders = append(orders, a.no)
		case a.kind == "notify" && a.status == 200 && a.body == wxpay.NotifyReplySuccess:
			notified++
		case a.status != http.StatusServiceUnavailable:
			t.Errorf("%s %s: %d %s", a.kind, a.no, a.status, a.body)
		}
	}
	waitFor(t, "the notifications' events", 10*time.Second, func() bool { return len(backend.got()) >= notified })
	proc.stop()
	if logs, _ := os.ReadFile(logFile.Name()); bytes.Contains(logs, []byte("panic")) {
		t.Fatalf("the gateway panicked:\n%s", logs)
	}
	st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{Path: ledgerPath})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, no := range orders {
		if o, err := st.GetOrder(context.Background(), testMchID, no); err != nil || o.PrepayID == "" {
			t.Errorf("order %s answered 200 is not in the ledger: %+v, %v", no, o, err)
		}
	}
	t.Logf("%d orders and %d notifications served during and after the start", len(orders), notified)
	if len(orders) == 0 || notified == 0 {
		t.Fatal("nothing was served")
	}
}
