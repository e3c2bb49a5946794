package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// fetchCounter counts the worker's DueEvents calls.
type fetchCounter struct {
	Outbox
	fetches atomic.Int64
}

func (f *fetchCounter) DueEvents(ctx context.Context, now time.Time, limit int, exclude []string, lease time.Duration) ([]*ledger.Event, error) {
	f.fetches.Add(1)
	return f.Outbox.DueEvents(ctx, now, limit, exclude, lease)
}

// orderBackend checks, as it takes events, that no two events of one order
// are ever sent at once and that an order's events arrive in order.
type orderBackend struct {
	mu        sync.Mutex
	orderOf   map[string]string // event -> order
	seqOf     map[string]int    // event -> its index in its order
	sending   map[string]string // order -> event being sent
	next      map[string]int    // order -> index of the next event to deliver
	delivered map[string]int
	attempts  map[string]int
	fail      func(id string, n int) bool
	errs      []string
}

func newOrderBackend(fail func(id string, n int) bool) *orderBackend {
	return &orderBackend{orderOf: map[string]string{}, seqOf: map[string]int{}, sending: map[string]string{},
		next: map[string]int{}, delivered: map[string]int{}, attempts: map[string]int{}, fail: fail}
}

func (b *orderBackend) Send(ctx context.Context, id string, payload []byte) Result {
	b.mu.Lock()
	order := b.orderOf[id]
	if other, ok := b.sending[order]; ok {
		b.errs = append(b.errs, fmt.Sprintf("%s sent while %s of the same order is in flight", id, other))
	}
	b.sending[order] = id
	b.attempts[id]++
	n := b.attempts[id]
	b.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.sending, order)
	if b.fail(id, n) {
		return Result{Status: 503}
	}
	if b.delivered[id] == 0 {
		if want := b.next[order]; b.seqOf[id] != want {
			b.errs = append(b.errs, fmt.Sprintf("%s (#%d of %s) delivered before #%d", id, b.seqOf[id], order, want))
		}
		b.next[order]++
	}
	b.delivered[id]++
	return Result{Status: 200}
}

// Many orders with several events each, some failing a few times, recorded
// while the worker runs: every event is delivered exactly once, an order's
// events one at a time and in order, with far fewer fetches than events.
func TestQueueKeepsOrderAndCoalescesFetches(t *testing.T) {
	st := openStore(t)
	fc := &fetchCounter{Outbox: st}
	b := newOrderBackend(func(id string, n int) bool {
		return id[len(id)-1] == '3' && n < 3 // events ending in 3 fail twice
	})
	const orders, perOrder = 60, 4
	now := time.Now()
	for o := range orders {
		for k := range perOrder {
			id := fmt.Sprintf("evt_%02d_%d", o, k)
			b.orderOf[id], b.seqOf[id] = fmt.Sprintf("O%02d", o), k
		}
	}
	w := New(Config{Store: fc})
	p := fastPolicy()
	p.Concurrency = 6
	w.SetSender(b, p)
	w.Start()
	defer stop(w)
	var wg sync.WaitGroup
	for k := range perOrder { // the events of an order are recorded in order
		for o := range orders {
			wg.Go(func() {
				id := fmt.Sprintf("evt_%02d_%d", o, k)
				record(t, st, id, fmt.Sprintf("O%02d", o), now.Add(time.Duration(k)*time.Millisecond+time.Duration(o)))
				w.Notify()
			})
		}
		wg.Wait()
	}
	waitFor(t, "every event delivered", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.delivered) == orders*perOrder
	})
	time.Sleep(50 * time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		t.Error(e)
	}
	for id, n := range b.delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	total := int64(orders * perOrder)
	t.Logf("%d events, %d fetches", total, fc.fetches.Load())
	if f := fc.fetches.Load(); f > total/2 {
		t.Errorf("%d fetches for %d events: wake-ups not coalesced", f, total)
	}
}

// A retry falls due on time while a long attempt holds another slot (the
// worker wakes for the retries it scheduled; it does not wait for the poll
// interval or for the long attempt to end).
func TestRetryOnTimeBesideSlowAttempt(t *testing.T) {
	st := openStore(t)
	var fastDone atomic.Int64
	slowRelease := make(chan struct{})
	b := newBackend(func(id string, n int) Result {
		if id == "evt_flaky" && n < 4 {
			return Result{Err: errors.New("connection reset")}
		}
		if id == "evt_flaky" {
			fastDone.Store(time.Now().UnixNano())
		}
		return Result{Status: 200}
	})
	slow := &slowSender{backend: b, slowID: "evt_slow", release: slowRelease}
	w := New(Config{Store: st}) // PollInterval 5s
	w.SetSender(slow, fastPolicy())
	start := time.Now()
	record(t, st, "evt_slow", "S", start)
	record(t, st, "evt_flaky", "F", start)
	w.Start()
	defer stop(w)
	defer close(slowRelease)
	waitFor(t, "the flaky event delivered", func() bool { return fastDone.Load() != 0 })
	if d := time.Duration(fastDone.Load() - start.UnixNano()); d > 2*time.Second {
		t.Fatalf("the flaky event took %v (retries at 2–20 ms)", d)
	}
}

// slowSender holds one event until released.
type slowSender struct {
	backend *backend
	slowID  string
	release chan struct{}
}

func (s *slowSender) Send(ctx context.Context, id string, payload []byte) Result {
	if id == s.slowID {
		select {
		case <-s.release:
		case <-ctx.Done():
			return Result{Err: ctx.Err()}
		}
	}
	return s.backend.Send(ctx, id, payload)
}

// Events recorded while paused are not started; they all go, and only
// once, after Resume.
func TestPausedQueue(t *testing.T) {
	st := openStore(t)
	b := newBackend(func(string, int) Result { return Result{Status: 200} })
	w := New(Config{Store: st})
	w.SetSender(b, fastPolicy())
	w.Start()
	defer stop(w)
	record(t, st, "evt_0", "P0", time.Now())
	w.Notify()
	waitFor(t, "the first delivery", func() bool { d, _ := b.snapshot(); return len(d) == 1 })
	waitFor(t, "its outcome recorded", func() bool { return w.InFlight() == 0 })
	w.Pause()
	for i := 1; i <= 20; i++ {
		record(t, st, fmt.Sprintf("evt_%d", i), fmt.Sprintf("P%d", i), time.Now())
		w.Notify()
	}
	time.Sleep(100 * time.Millisecond)
	if d, _ := b.snapshot(); len(d) != 1 || w.InFlight() != 0 {
		t.Fatalf("while paused: %d delivered, %d in flight", len(d), w.InFlight())
	}
	w.Resume()
	waitFor(t, "every delivery", func() bool { d, _ := b.snapshot(); return len(d) == 21 })
	time.Sleep(50 * time.Millisecond)
	d, _ := b.snapshot()
	for id, n := range d {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
}
