package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/internal/pgtest"
	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

func openPostgres(t *testing.T, dsn string) ledger.Store {
	t.Helper()
	st, err := ledger.OpenPostgres(context.Background(), ledger.PostgresOptions{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Two gateways share a PostgreSQL ledger. One has claimed events it
// queued behind an attempt in flight, then is paused (or loses its
// upstream in a reload): it gives their claims back, and the other sends
// them at once instead of after the claims' lease (here 15 s).
func TestPausedGatewayGivesBackItsClaims(t *testing.T) {
	for _, how := range []string{"paused", "sender cleared"} {
		t.Run(how, func(t *testing.T) {
			dsn := pgtest.Schema(t)
			stA, stB := openPostgres(t, dsn), openPostgres(t, dsn)
			now := time.Now()
			for _, id := range []string{"evt_1", "evt_2", "evt_3"} {
				record(t, stA, id, "O"+id, now)
			}
			gate := make(chan struct{})
			a := newBackend(func(string, int) Result { return Result{Status: 200} })
			held := senderFunc(func(ctx context.Context, id string, p []byte) Result {
				select {
				case <-gate:
				case <-ctx.Done():
				}
				return a.Send(ctx, id, p)
			})
			p := fastPolicy()
			p.Concurrency = 1 // one in flight, held; the other two queued, claimed
			wa := New(Config{Store: stA})
			wa.SetSender(held, p)
			wa.Start()
			defer stop(wa)
			defer close(gate)
			waitFor(t, "an attempt in flight", func() bool { return wa.InFlight() == 1 })

			b := newBackend(func(string, int) Result { return Result{Status: 200} })
			wb := New(Config{Store: stB, PollInterval: 50 * time.Millisecond})
			wb.SetSender(b, fastPolicy())
			wb.Start()
			defer stop(wb)
			// B finds nothing it may take: A claimed all three.
			time.Sleep(300 * time.Millisecond)
			if d, _ := b.snapshot(); len(d) != 0 {
				t.Fatalf("B delivered %v while A held their claims", d)
			}
			if how == "paused" {
				wa.Pause()
			} else {
				wa.ClearSender("the running configuration has no upstream")
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				d, _ := b.snapshot()
				if len(d) == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("A %s: B delivered %v within 5 s, want the two events A had queued", how, d)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
