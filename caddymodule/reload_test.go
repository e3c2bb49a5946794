package caddymodule_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/goleak"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// Config reloads while payments flow: every payment reaches the backend
// exactly once under one event id, and once Caddy stops, nothing the
// configurations started is left running.
func TestReloadUnderLoad(t *testing.T) {
	// Registered first, so it runs last: after Caddy, the backend and the
	// simulator have stopped.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, ignore,
			// Caddy's own, not the module's: the file logger's
			// rotation goroutine lives as long as the process, and
			// certmagic refreshes a storage lock file for a while.
			goleak.IgnoreAnyFunction("github.com/DeRuina/timberjack.(*Logger).millRun"),
			goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"))
	})

	g := startGateway(t, gatewayOptions{upstream: "timeout 10s"})
	const orders = 150
	prepay := make([]string, orders)
	for i := range prepay {
		status, out := g.post("/wxpay/orders", testToken, map[string]any{
			"out_trade_no": fmt.Sprintf("reload%03d", i), "total_fee": 10 + i, "body": "b", "trade_type": "APP"})
		if status != 200 {
			t.Fatalf("order %d: %d %v", i, status, out)
		}
		prepay[i] = out["prepay_id"].(string)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range prepay {
			if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: prepay[i]}); err != nil {
				t.Errorf("pay %d: %v", i, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	reloads := 0
	go func() {
		defer wg.Done()
		for i := 0; i < 6; i++ {
			time.Sleep(40 * time.Millisecond)
			// A real change each time, so that Caddy does reload.
			cfg := strings.Replace(g.cfg, "timeout 10s", fmt.Sprintf("timeout %ds", 11+i), 1)
			if err := tryLoadCaddyfile(cfg); err != nil {
				t.Errorf("reload %d: %v", i, err)
				return
			}
			reloads++
		}
	}()
	wg.Wait()
	if reloads != 6 {
		t.Fatalf("%d reloads", reloads)
	}

	waitFor(t, "every notification acknowledged", 60*time.Second, func() bool {
		n := 0
		for _, r := range g.sim.Notifications() {
			if r.Acknowledged {
				n++
			}
		}
		return n == orders
	})
	waitFor(t, "every payment delivered", 60*time.Second, func() bool { return len(g.backend.got()) >= orders })
	time.Sleep(300 * time.Millisecond) // a duplicate would show up now
	got := g.backend.got()
	ids := map[string]string{} // out_trade_no -> event id
	for _, r := range got {
		ev := checkEvent(t, r)
		no := ev["data"].(map[string]any)["out_trade_no"].(string)
		if prev, ok := ids[no]; ok {
			t.Errorf("%s delivered twice (ids %s and %s)", no, prev, ev["id"])
		}
		ids[no] = ev["id"].(string)
	}
	if len(ids) != orders || len(got) != orders {
		t.Fatalf("backend got %d deliveries of %d payments, want %d of %d", len(got), len(ids), orders, orders)
	}
}

// A reload whose new configuration fails to start after its wxpay app
// started (here its http app cannot bind a port that is taken; Caddy
// starts the apps in no fixed order, so the test reloads until that
// order came up) leaves the running configuration in charge: the admin
// API answers, and its events go to its own upstream, not to the failed
// configuration's (before: the failed configuration had taken the shared
// worker and the admin API with it).
func TestFailedReloadLeavesTheRunningConfigInCharge(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	other := newBackend(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := strings.Replace(g.cfg, g.backend.URL+"/events", other.URL+"/events", 1)
	if bad == g.cfg {
		t.Fatal("the test could not point the new configuration at another upstream")
	}
	bad += fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\trespond \"x\"\n}\n", busy.Addr().(*net.TCPAddr).Port)
	starts := func() int {
		b, _ := os.ReadFile(g.logFile)
		return bytes.Count(b, []byte(`"msg":"ledger open"`))
	}
	tookOver := 0
	for i := 0; i < 40 && tookOver < 3; i++ {
		before := starts()
		if err := tryLoadCaddyfile(bad); err == nil {
			t.Fatal("a configuration with a port taken loaded")
		}
		if starts() > before {
			tookOver++ // the new wxpay app had started
		}
		if status, body := g.adminDo(t, http.MethodGet, "/wxpay/delivery"); status != 200 {
			t.Fatalf("after a failed reload (attempt %d): GET /wxpay/delivery = %d %s", i+1, status, bytes.TrimSpace(body))
		}
	}
	if tookOver == 0 {
		t.Skip("Caddy never started the wxpay app before the failing http app in 40 reloads")
	}
	g.placeAndPay(t, "reload-fail-1", 15, wxpaysim.PayOptions{})
	waitFor(t, "the event at the running configuration's upstream", 10*time.Second, func() bool { return len(g.backend.got()) == 1 })
	if n := len(other.got()); n != 0 {
		t.Fatalf("the failed configuration's upstream got %d deliveries", n)
	}
	// The running configuration logs the hand-back.
	if b, _ := os.ReadFile(g.logFile); !bytes.Contains(b, []byte("the new configuration failed to start")) {
		t.Fatal("no log entry for the hand-back")
	}
}

// The delivery worker, shared across reloads, logs with the running
// configuration's logger: after a reload that moves Caddy's log to
// another file, a failed delivery is logged there.
func TestDeliveryLogsFollowTheRunningConfig(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	g.backend.setStatus(func(int) int { return http.StatusServiceUnavailable })
	newLog := filepath.Join(g.dir, "caddy2.log")
	loadCaddyfile(t, strings.Replace(g.cfg, g.logFile, newLog, 1))
	g.placeAndPay(t, "reload-log-1", 15, wxpaysim.PayOptions{})
	waitFor(t, "the failed delivery in the running configuration's log", 10*time.Second, func() bool {
		b, _ := os.ReadFile(newLog)
		return bytes.Contains(b, []byte("event delivery failed")) && bytes.Contains(b, []byte("reload-log-1"))
	})
	checkNoSecretsIn(t, newLog)
}

// Caddy stops its apps in no fixed order: an order in flight when Caddy
// stops (its answer from WeChat still on the way) is completed with the
// ledger still open, whether the wxpay app or the http app stops first,
// and under steady traffic too: requests that come once the stop began are
// turned away (503), so that the stop does not wait for ever newer ones.
func TestStopLetsOrdersInFlightFinish(t *testing.T) {
	for i := range 4 { // either stop order, likely
		g := startGateway(t, gatewayOptions{})
		// Steady traffic, overlapping: queries WeChat answers in 100 ms, from
		// eight clients on keep-alive connections.
		g.sim.DelayNext(wxpaysim.APIOrderQuery, 100000, 100*time.Millisecond)
		var traffic sync.WaitGroup
		quit := make(chan struct{})
		for range 8 {
			traffic.Go(func() {
				for {
					select {
					case <-quit:
						return
					default:
					}
					req, _ := http.NewRequest(http.MethodGet, g.base+"/wxpay/orders/steady0001", nil)
					req.Header.Set("Authorization", "Bearer "+testToken)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
				}
			})
		}
		time.Sleep(150 * time.Millisecond) // the traffic is under way
		no := fmt.Sprintf("stopwait%d", i)
		g.sim.DelayNext(wxpaysim.APIUnifiedOrder, 1, 500*time.Millisecond)
		type answer struct {
			status int
			out    map[string]any
		}
		done := make(chan answer, 1)
		go func() {
			status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": no, "total_fee": 1, "body": "b", "trade_type": "APP"})
			done <- answer{status, out}
		}()
		waitFor(t, "WeChat to have the order", 5*time.Second, func() bool { _, ok := g.sim.Order(testMchID, no); return ok })
		start := time.Now()
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		close(quit)
		traffic.Wait()
		if took > 10*time.Second {
			t.Fatalf("stop %d took %v under steady traffic", i, took)
		}
		a := <-done
		if a.status != 200 || a.out["prepay_id"] == nil {
			t.Fatalf("stop %d: the order in flight answered %d %v", i, a.status, a.out)
		}
	}
}
