package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

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
