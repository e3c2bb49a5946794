package delivery

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// gatedFetch is a real ledger whose DueEvents, once armed, signals that it
// has begun and waits for release before reading (a slow database).
type gatedFetch struct {
	ledger.Store
	armed   *atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g gatedFetch) DueEvents(ctx context.Context, now time.Time, limit int, exclude []string, lease time.Duration) ([]*ledger.Event, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
		now = time.Now()
	}
	return g.Store.DueEvents(ctx, now, limit, exclude, lease)
}

// A reload that removes the upstream (ClearSender) or swaps it
// (SetSender) while the dispatcher is fetching: after the call returned,
// the old upstream must receive nothing.
func TestSenderSwapDuringFetch(t *testing.T) {
	for _, swap := range []string{"clear", "set"} {
		t.Run(swap, func(t *testing.T) {
			st := openStore(t)
			g := gatedFetch{Store: st, armed: new(atomic.Bool), entered: make(chan struct{}), release: make(chan struct{})}
			old := newBackend(func(string, int) Result { return Result{Status: 200} })
			nu := newBackend(func(string, int) Result { return Result{Status: 200} })
			w := New(Config{Store: g, PollInterval: time.Hour})
			w.SetSender(old, fastPolicy())
			w.Start()
			defer stop(w)
			time.Sleep(50 * time.Millisecond) // the first (empty) fetch
			record(t, st, "evt_r", "R", time.Now())
			g.armed.Store(true)
			w.Notify()
			<-g.entered
			if swap == "clear" {
				w.ClearSender("the running configuration has no upstream")
			} else {
				w.SetSender(nu, fastPolicy())
			}
			close(g.release)
			time.Sleep(200 * time.Millisecond)
			if d, _ := old.snapshot(); d["evt_r"] != 0 {
				t.Fatalf("the replaced upstream received evt_r %d time(s) after %s returned", d["evt_r"], map[string]string{"clear": "ClearSender", "set": "SetSender"}[swap])
			}
			if swap == "set" {
				waitFor(t, "the new upstream to take evt_r", func() bool { d, _ := nu.snapshot(); return d["evt_r"] == 1 })
			}
		})
	}
}

// An event the worker has queued (fetched, waiting for a slot) is replayed
// to give it a fresh retry window; its first attempt after the replay
// fails. It must stay pending (a whole window from the replay), not die.
func TestReplayOfQueuedEvent(t *testing.T) {
	st := openStore(t)
	gate := make(chan struct{})
	b := newBackend(func(id string, n int) Result {
		if id == "evt_q" {
			return Result{Status: 503}
		}
		return Result{Status: 200}
	})
	blocking := senderFunc(func(ctx context.Context, id string, p []byte) Result {
		if id == "evt_a" {
			<-gate
		}
		return b.Send(ctx, id, p)
	})
	p := fastPolicy()
	p.Concurrency = 1
	p.MaxAge = time.Hour
	w := New(Config{Store: st})
	w.SetSender(blocking, p)
	now := time.Now()
	record(t, st, "evt_a", "A", now.Add(-3*time.Hour))
	record(t, st, "evt_q", "Q", now.Add(-2*time.Hour)) // older than MaxAge, still pending
	w.Start()
	defer stop(w)
	waitFor(t, "evt_a in flight", func() bool { return w.InFlight() == 1 })
	time.Sleep(20 * time.Millisecond) // evt_q is in the queue
	if err := st.Replay(context.Background(), "evt_q", time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Notify()
	close(gate)
	waitFor(t, "evt_q attempted", func() bool {
		e, _, _ := st.GetEvent(context.Background(), "evt_q")
		return e != nil && e.Attempts >= 1
	})
	e, _, _ := st.GetEvent(context.Background(), "evt_q")
	if e.State != ledger.EventPending {
		t.Fatalf("replayed event is %s after one failed attempt, want pending (a whole window from the replay)", e.State)
	}
}

type senderFunc func(ctx context.Context, id string, p []byte) Result

func (f senderFunc) Send(ctx context.Context, id string, p []byte) Result { return f(ctx, id, p) }
