package wxpaysim

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A simulator left running cannot be made to grow without end: orders,
// refunds, notification records, notifications on their retry schedule and
// queued faults are bounded, and a fault's delay is cut to the limit.
func TestLimits(t *testing.T) {
	// A notify URL that never acknowledges, so that notifications stay on
	// their retry schedule.
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	t.Cleanup(never.Close)
	e := newTLSEnv(t, Config{TimeScale: 1000, Limits: Limits{Orders: 3, Refunds: 1, Notifications: 2, Pending: 2, Faults: 2, Delay: 50 * time.Millisecond}})
	c := e.merchantAPI(t)
	for _, no := range []string{"L1", "L2", "L3"} {
		c.place(t, no, never.URL)
	}
	// A fourth order is refused; the same order again is still answered.
	kv := []string{"out_trade_no", "L4", "notify_url", never.URL}
	for _, f := range baseParams("L4") {
		if f.Name != "out_trade_no" && f.Name != "notify_url" {
			kv = append(kv, f.Name, f.Value)
		}
	}
	wantErrCode(t, c.call(t, "/pay/unifiedorder", kv...), "SYSTEMERROR")
	c.place(t, "L1", never.URL)

	pay(t, e.sim, "L1", PayOptions{})
	pay(t, e.sim, "L2", PayOptions{})
	if _, err := e.sim.Pay(t.Context(), PayOptions{MchID: testMchID, OutTradeNo: "L3"}); !errors.Is(err, ErrLimit) {
		t.Fatalf("a third notification on its schedule: %v", err)
	}
	wantOK(t, c.call(t, "/secapi/pay/refund", refundKV("L1", "R1", "100")...))
	wantErrCode(t, c.call(t, "/secapi/pay/refund", refundKV("L2", "R2", "100")...), "SYSTEMERROR")
	if n := len(e.sim.Notifications()); n != 2 {
		t.Fatalf("%d notification records kept, want 2", n)
	}

	for i := range 5 {
		e.sim.FailNext(APIOrderQuery, 1, []string{"A", "B", "C", "D", "E"}[i])
	}
	e.sim.DelayNext(APIOrderQuery, 1, time.Hour)
	e.sim.mu.Lock()
	fails, delays := e.sim.fails[APIOrderQuery], e.sim.delays[APIOrderQuery]
	e.sim.mu.Unlock()
	if len(fails) != 2 || fails[0].errCode != "D" || fails[1].errCode != "E" {
		t.Fatalf("queued failures %+v, want the last 2", fails)
	}
	if len(delays) != 1 || delays[0].delay != 50*time.Millisecond {
		t.Fatalf("queued delays %+v, want one cut to 50ms", delays)
	}
}
