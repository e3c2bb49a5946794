package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/internal/pgtest"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// Several gateways on one PostgreSQL ledger, as real Caddy processes
// behind a load balancer: what the production set-up of the README runs.

// clusterBackend is the merchant's backend: it flaps (down one 300 ms
// slice in three), takes a few milliseconds per event, and notes every
// delivery, and any moment when one event was being delivered twice at
// once (by two gateways).
type clusterBackend struct {
	*httptest.Server
	start time.Time

	mu       sync.Mutex
	seen     []delivery
	inflight map[string]int
	overlaps []string
}

func newClusterBackend(t *testing.T) *clusterBackend {
	b := &clusterBackend{start: time.Now(), inflight: map[string]int{}}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				TransactionID string `json:"transaction_id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		b.mu.Lock()
		b.inflight[ev.ID]++
		if b.inflight[ev.ID] > 1 {
			b.overlaps = append(b.overlaps, ev.ID)
		}
		b.mu.Unlock()
		time.Sleep(3 * time.Millisecond)
		status := http.StatusOK
		if (time.Since(b.start).Milliseconds()/300)%3 == 0 {
			status = http.StatusServiceUnavailable
		}
		b.mu.Lock()
		b.inflight[ev.ID]--
		b.seen = append(b.seen, delivery{id: ev.ID, tx: ev.Data.TransactionID, status: status})
		b.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(b.Close)
	return b
}

// deliveredAll reports whether every transaction of want was delivered
// (answered 200) at least once.
func (b *clusterBackend) deliveredAll(want map[string]bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := map[string]bool{}
	for _, d := range b.seen {
		if d.status == 200 {
			ok[d.tx] = true
		}
	}
	for tx := range want {
		if !ok[tx] {
			return false
		}
	}
	return true
}

// check asserts one event id per transaction, n transactions, and no
// event delivered twice at the same moment.
func (b *clusterBackend) check(t *testing.T, n int) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	idsOf := map[string]map[string]bool{}
	for _, d := range b.seen {
		if idsOf[d.tx] == nil {
			idsOf[d.tx] = map[string]bool{}
		}
		idsOf[d.tx][d.id] = true
	}
	for tx, ids := range idsOf {
		if len(ids) != 1 {
			t.Errorf("transaction %s was delivered under %d event ids", tx, len(ids))
		}
	}
	if len(idsOf) != n {
		t.Errorf("the backend saw %d transactions, want %d", len(idsOf), n)
	}
	if len(b.overlaps) > 0 {
		t.Errorf("%d deliveries of an event while another delivery of it was under way (first: %s)", len(b.overlaps), b.overlaps[0])
	}
}

// balancer spreads requests over the gateways that answer, in turn, as a
// load balancer would; it sends every dupEvery-th notification to all of
// them at once (WeChat retrying while the first attempt is still being
// answered, landing on another instance), answering with the first
// acknowledgement.
type balancer struct {
	*httptest.Server
	mu       sync.Mutex
	backends []string
	next     atomic.Uint64
	notes    atomic.Uint64
	dupEvery uint64
	client   *http.Client
}

func newBalancer(t *testing.T, dupEvery uint64) *balancer {
	lb := &balancer{dupEvery: dupEvery, client: &http.Client{Timeout: 20 * time.Second}}
	lb.Server = httptest.NewServer(http.HandlerFunc(lb.serve))
	t.Cleanup(lb.Close)
	return lb
}

func (lb *balancer) setBackends(urls ...string) {
	lb.mu.Lock()
	lb.backends = urls
	lb.mu.Unlock()
}

type lbAnswer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

func (lb *balancer) forward(r *http.Request, body []byte, base string) lbAnswer {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), strings.NewReader(string(body)))
	if err != nil {
		return lbAnswer{err: err}
	}
	req.Header = r.Header.Clone()
	resp, err := lb.client.Do(req)
	if err != nil {
		return lbAnswer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return lbAnswer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (lb *balancer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	lb.mu.Lock()
	backends := append([]string(nil), lb.backends...)
	lb.mu.Unlock()
	var answers []lbAnswer
	if r.URL.Path == "/wxpay/notify" && lb.dupEvery > 0 && lb.notes.Add(1)%lb.dupEvery == 0 {
		answers = make([]lbAnswer, len(backends))
		var wg sync.WaitGroup
		for i, b := range backends {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = lb.forward(r, body, b) }()
		}
		wg.Wait()
	} else {
		// In turn; a gateway that does not answer is skipped, as a load
		// balancer's health check would.
		k := lb.next.Add(1)
		for i := range backends {
			a := lb.forward(r, body, backends[(int(k)+i)%len(backends)])
			answers = append(answers, a)
			if a.err == nil {
				break
			}
		}
	}
	pick := -1
	for i, a := range answers {
		if a.err == nil && (pick < 0 || (a.status == 200 && strings.Contains(string(a.body), "SUCCESS"))) {
			pick = i
		}
	}
	if pick < 0 {
		http.Error(w, "no gateway answered", http.StatusBadGateway)
		return
	}
	a := answers[pick]
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// clusterGateway writes the Caddyfile of one gateway of a cluster: its own
// site and admin ports, the shared ledger (from the environment, as the
// README advises), the shared Caddy storage, and notify_url at the load
// balancer.
func clusterGateway(t *testing.T, bin, dir, name, dsn, lb, simURL, backendURL string) (*caddyProcess, string, string) {
	t.Helper()
	site := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`{
	admin %s
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
			timeout 2s
			retry_max_interval 500ms
			concurrency 8
		}
		api_token %s
		storage postgres {env.WXPAY_DATABASE_URL} {
			max_conns 8
			query_timeout 3s
			connect_timeout 2s
		}
	}
}
%s {
	wxpay
}
`, admin, filepath.Join(dir, "shared-storage"), testMchID, testAppID, testKey, lb, simURL, backendURL, testSecret, testToken, site)
	cfgFile := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logFile.Close()
		checkNoSecretsIn(t, logFile.Name())
		if t.Failed() {
			// The gateway's errors, to say why.
			b, _ := os.ReadFile(logFile.Name())
			var errs []string
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, `"level":"error"`) {
					errs = append(errs, line)
				}
			}
			t.Logf("%s logged %d errors; the first: %s", name, len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"))
		}
	})
	p := &caddyProcess{t: t, bin: bin, config: cfgFile, log: logFile, env: []string{
		"WXPAY_DATABASE_URL=" + dsn,
		"XDG_DATA_HOME=" + filepath.Join(dir, name+"-xdg-data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, name+"-xdg-config"),
	}}
	return p, site, admin
}

// placeOrders places n orders through base and returns their prepay_ids.
func placeOrders(t *testing.T, base, prefix string, n int) []string {
	t.Helper()
	g := &gateway{t: t, base: base}
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
				"out_trade_no": fmt.Sprintf("%s%04d", prefix, i), "total_fee": 100 + i, "body": "b", "trade_type": "APP"})
			if status != 200 {
				t.Errorf("order %d: %d %v", i, status, out)
				return
			}
			prepay[i] = out["prepay_id"].(string)
		}(i)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return prepay
}

// acked counts the notifications WeChat saw acknowledged, and their
// transactions.
func ackedBy(sim *wxpaysim.Simulator) (int, map[string]bool) {
	tx := map[string]bool{}
	n := 0
	for _, r := range sim.Notifications() {
		if r.Acknowledged {
			n++
			tx[r.TransactionID] = true
		}
	}
	return n, tx
}

// fastSim is the simulator of the cluster tests, WeChat's retries a
// thousand times faster, served until the test ends.
func fastSim(t *testing.T) (*wxpaysim.Simulator, string) {
	sim := wxpaysim.New(wxpaysim.Config{
		Merchants: []wxpaysim.Merchant{{MchID: testMchID, Key: testKey, AppIDs: []string{testAppID}}},
		TimeScale: 0.001,
	})
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { sim.Close(); srv.Close() })
	return sim, srv.URL
}

// waitAckedDelivered waits until WeChat saw all n notifications
// acknowledged and the backend took each acknowledged payment, then checks
// the backend's record (one event id per transaction, n transactions, no
// event delivered twice at once).
func waitAckedDelivered(t *testing.T, sim *wxpaysim.Simulator, backend *clusterBackend, n int) {
	t.Helper()
	waitFor(t, "every notification acknowledged", 120*time.Second, func() bool { a, _ := ackedBy(sim); return a == n })
	_, ackedTx := ackedBy(sim)
	waitFor(t, "every acknowledged payment delivered", 120*time.Second, func() bool { return backend.deliveredAll(ackedTx) })
	backend.check(t, n)
}

// ledgerCounts reads the events per state from a gateway's admin API.
func ledgerCounts(t *testing.T, admin string) map[string]int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/wxpay/delivery")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var status struct {
		Events map[string]int `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		return nil
	}
	return status.Events
}

// TestTwoGatewaysOneDatabase: two real Caddy processes share one
// PostgreSQL ledger behind a load balancer. 500 payments are notified
// over both, some to both at once, while the backend flaps; one gateway is
// killed with SIGKILL mid-run and comes back later. Every notification
// WeChat saw acknowledged reaches the backend, each transaction under one
// event id, no event is delivered by both at the same moment, and either
// gateway's admin API shows the whole shared ledger.
func TestTwoGatewaysOneDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs caddy processes")
	}
	dsn := pgtest.Schema(t)
	bin := caddyBinary(t)
	dir := t.TempDir()
	const n = 500
	backend := newClusterBackend(t)
	sim, simURL := fastSim(t)
	lb := newBalancer(t, 7)

	gw1, site1, admin1 := clusterGateway(t, bin, dir, "gw1", dsn, lb.URL, simURL, backend.URL)
	gw2, site2, admin2 := clusterGateway(t, bin, dir, "gw2", dsn, lb.URL, simURL, backend.URL)
	// Both start at once: the schema is migrated once, under the lock.
	var wg sync.WaitGroup
	for _, g := range []struct {
		p    *caddyProcess
		site string
	}{{gw1, site1}, {gw2, site2}} {
		wg.Add(1)
		go func() { defer wg.Done(); g.p.start(g.site + "/") }()
	}
	wg.Wait()
	defer gw1.stop()
	defer gw2.stop()
	lb.setBackends(site1, site2)

	prepay := placeOrders(t, lb.URL, "pg", n)
	for i := 0; i < n; i++ {
		if i == n/3 {
			waitFor(t, "the first notifications acknowledged", 60*time.Second, func() bool { a, _ := ackedBy(sim); return a >= n/6 })
			gw2.kill()
			lb.setBackends(site1, site2) // gw2 refuses connections: the balancer skips it
		}
		if i == 2*n/3 {
			gw2.start(site2 + "/")
		}
		if _, err := sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: prepay[i]}); err != nil {
			t.Fatalf("pay %d: %v", i, err)
		}
	}
	waitAckedDelivered(t, sim, backend, n)

	var last1, last2 map[string]int
	defer func() {
		if t.Failed() {
			t.Logf("ledger as gw1 sees it: %v; as gw2: %v", last1, last2)
		}
	}()
	waitFor(t, "both gateways to show the shared ledger delivered", 60*time.Second, func() bool {
		last1, last2 = ledgerCounts(t, admin1), ledgerCounts(t, admin2)
		for _, c := range []map[string]int{last1, last2} {
			if c["delivered"] != n || c["pending"] != 0 || c["dead"] != 0 {
				return false
			}
		}
		return true
	})
}

// TestDatabaseCrashMidRun: the ledger's PostgreSQL crashes (stopped without
// a shutdown checkpoint) in the middle of a burst of notifications and
// comes back. While it is down, the gateway answers WeChat FAIL, never
// SUCCESS; WeChat retries; every notification it saw acknowledged is
// delivered, none lost.
func TestDatabaseCrashMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs caddy processes and a database")
	}
	srv := pgtest.StartServer(t)
	bin := caddyBinary(t)
	dir := t.TempDir()
	const n = 300
	backend := newClusterBackend(t)
	sim, simURL := fastSim(t)
	lb := newBalancer(t, 0)
	gw, site, admin := clusterGateway(t, bin, dir, "gw", srv.DSN(), lb.URL, simURL, backend.URL)
	gw.start(site + "/")
	defer gw.stop()
	lb.setBackends(site)

	prepay := placeOrders(t, site, "db", n)
	down := false
	for i := 0; i < n; i++ {
		if i == n/3 {
			waitFor(t, "the first notifications acknowledged", 60*time.Second, func() bool { a, _ := ackedBy(sim); return a >= n/6 })
			srv.Crash()
			down = true
		}
		if i == 2*n/3 {
			// Every payment so far notified at least once while the
			// database was down.
			time.Sleep(2 * time.Second)
			srv.Start()
			down = false
		}
		if _, err := sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: prepay[i]}); err != nil {
			t.Fatalf("pay %d: %v (database down: %v)", i, err, down)
		}
	}
	waitAckedDelivered(t, sim, backend, n)

	// While the database was down, attempts were answered, and not with
	// SUCCESS: WeChat's retries carried them.
	refused := 0
	for _, r := range sim.Notifications() {
		for _, a := range r.Attempts {
			if a.StatusCode != 0 && !a.Acked {
				refused++
			}
		}
	}
	if refused == 0 {
		t.Error("no notification was answered FAIL while the database was down: the crash came at the wrong time, nothing was tested")
	}
	var last map[string]int
	defer func() {
		if t.Failed() {
			t.Logf("ledger: %v", last)
		}
	}()
	waitFor(t, "the ledger to show every event delivered", 60*time.Second, func() bool {
		last = ledgerCounts(t, admin)
		return last["delivered"] == n && last["pending"] == 0 && last["dead"] == 0
	})
}
