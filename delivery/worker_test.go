package delivery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend stands in for the merchant's backend: answer decides each
// attempt's status; it records what it took.
type backend struct {
	mu        sync.Mutex
	answer    func(id string, n int) Result // n: attempts of this id so far, from 1
	attempts  map[string]int
	delivered map[string]int // 2xx answers per id
	order     []string       // ids in the order they were taken
	cur, peak int32
	delay     time.Duration
}

func newBackend(answer func(id string, n int) Result) *backend {
	return &backend{answer: answer, attempts: map[string]int{}, delivered: map[string]int{}}
}

func (b *backend) Send(ctx context.Context, id string, payload []byte) Result {
	c := atomic.AddInt32(&b.cur, 1)
	defer atomic.AddInt32(&b.cur, -1)
	for {
		p := atomic.LoadInt32(&b.peak)
		if c <= p || atomic.CompareAndSwapInt32(&b.peak, p, c) {
			break
		}
	}
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return Result{Err: ctx.Err()}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts[id]++
	r := b.answer(id, b.attempts[id])
	if r.Delivered() {
		b.delivered[id]++
		b.order = append(b.order, id)
	}
	return r
}

func (b *backend) snapshot() (map[string]int, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := map[string]int{}
	for k, v := range b.delivered {
		d[k] = v
	}
	return d, append([]string(nil), b.order...)
}

func openStore(t *testing.T) ledger.Store {
	t.Helper()
	st, err := ledger.OpenSQLite(context.Background(), ledger.SQLiteOptions{Path: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func record(t *testing.T, st ledger.Store, id, order string, created time.Time) {
	t.Helper()
	_, err := st.RecordEvent(context.Background(), &ledger.Event{
		ID: id, MchID: "10000100", Type: "payment.succeeded", OutTradeNo: order, TransactionID: "tx-" + id,
		Payload: []byte(`{"id":"` + id + `"}`), CreatedAt: created, NextAttemptAt: created,
	}, ledger.Change{})
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fastPolicy() Policy {
	return Policy{Concurrency: 4, AttemptTimeout: time.Second, FirstRetry: 2 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxAge: time.Hour}
}

func stop(w *Worker) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.Stop(ctx)
}

// The backend is down for many retry rounds, then comes back: every event
// is delivered, exactly once, since the backend answers 2xx the first time
// it takes one.
func TestBackendDownThenBack(t *testing.T) {
	st := openStore(t)
	var up atomic.Bool
	b := newBackend(func(id string, n int) Result {
		if !up.Load() {
			if n%2 == 0 {
				return Result{Err: errors.New("connection refused")}
			}
			return Result{Status: 503, Response: "down"}
		}
		return Result{Status: 204}
	})
	w := New(Config{Store: st})
	w.SetSender(b, fastPolicy())
	w.Start()
	defer stop(w)
	now := time.Now()
	const n = 60
	for i := 0; i < n; i++ {
		record(t, st, fmt.Sprintf("evt_%03d", i), fmt.Sprintf("order%d", i), now)
		w.Notify()
	}
	// Let every event fail several times.
	waitFor(t, "several failed rounds", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i := 0; i < n; i++ {
			if b.attempts[fmt.Sprintf("evt_%03d", i)] < 4 {
				return false
			}
		}
		return true
	})
	up.Store(true)
	waitFor(t, "every event delivered", func() bool {
		d, _ := b.snapshot()
		return len(d) == n
	})
	// The backend has them all; the worker records each outcome after the
	// backend answered: wait for the ledger, then judge.
	waitFor(t, "every delivery recorded", func() bool {
		c, err := st.CountEvents(context.Background())
		return err == nil && c[ledger.EventDelivered] == n
	})
	d, _ := b.snapshot()
	for id, c := range d {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	counts, err := st.CountEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts[ledger.EventDelivered] != n {
		t.Fatalf("ledger counts %v, want %d delivered", counts, n)
	}
	e, attempts, err := st.GetEvent(context.Background(), "evt_000")
	if err != nil {
		t.Fatal(err)
	}
	if e.Attempts != len(attempts) || len(attempts) < 5 || attempts[len(attempts)-1].Status != 204 || attempts[0].Error == "" {
		t.Fatalf("attempt log of evt_000: %d attempts recorded, %+v", e.Attempts, attempts)
	}
}

// Events of one order are delivered one at a time, in order, even when the
// first one needs retries; other orders are not held up.
func TestOrderingPerOrder(t *testing.T) {
	st := openStore(t)
	b := newBackend(func(id string, n int) Result {
		if id == "evt_a1" && n < 4 {
			return Result{Status: 500}
		}
		return Result{Status: 200}
	})
	w := New(Config{Store: st})
	w.SetSender(b, fastPolicy())
	now := time.Now()
	record(t, st, "evt_a1", "A", now)
	record(t, st, "evt_a2", "A", now.Add(time.Millisecond))
	record(t, st, "evt_b1", "B", now.Add(2*time.Millisecond))
	w.Start()
	defer stop(w)
	waitFor(t, "all delivered", func() bool { d, _ := b.snapshot(); return len(d) == 3 })
	_, order := b.snapshot()
	pos := map[string]int{}
	for i, id := range order {
		pos[id] = i
	}
	if pos["evt_a1"] > pos["evt_a2"] {
		t.Fatalf("order A delivered out of order: %v", order)
	}
	if pos["evt_b1"] > pos["evt_a1"] {
		t.Fatalf("order B waited for order A's retries: %v", order)
	}
}

func TestConcurrencyCap(t *testing.T) {
	st := openStore(t)
	b := newBackend(func(string, int) Result { return Result{Status: 200} })
	b.delay = 20 * time.Millisecond
	p := fastPolicy()
	p.Concurrency = 3
	w := New(Config{Store: st})
	w.SetSender(b, p)
	now := time.Now()
	for i := 0; i < 30; i++ {
		record(t, st, fmt.Sprintf("evt_%02d", i), fmt.Sprintf("o%d", i), now)
	}
	w.Start()
	defer stop(w)
	waitFor(t, "all delivered", func() bool { d, _ := b.snapshot(); return len(d) == 30 })
	if peak := atomic.LoadInt32(&b.peak); peak > 3 || peak < 2 {
		t.Fatalf("peak concurrency %d, want at most 3 (and more than 1)", peak)
	}
}

// Past MaxAge an event becomes a dead letter; a replay delivers it with
// the same id and payload.
func TestDeadLetterAndReplay(t *testing.T) {
	st := openStore(t)
	var fixed atomic.Bool
	b := newBackend(func(string, int) Result {
		if fixed.Load() {
			return Result{Status: 200}
		}
		return Result{Status: 410}
	})
	p := fastPolicy()
	p.MaxAge = 30 * time.Millisecond
	w := New(Config{Store: st})
	w.SetSender(b, p)
	record(t, st, "evt_dead", "D", time.Now())
	w.Start()
	defer stop(w)
	waitFor(t, "the dead letter", func() bool {
		e, _, err := st.GetEvent(context.Background(), "evt_dead")
		return err == nil && e.State == ledger.EventDead
	})
	e, _, _ := st.GetEvent(context.Background(), "evt_dead")
	if e.LastStatus != 410 || e.Attempts < 1 {
		t.Fatalf("dead letter %+v", e)
	}
	fixed.Store(true)
	if err := st.Replay(context.Background(), "evt_dead", time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Notify()
	waitFor(t, "the replay", func() bool { d, _ := b.snapshot(); return d["evt_dead"] == 1 })
}

func TestPauseResume(t *testing.T) {
	st := openStore(t)
	b := newBackend(func(string, int) Result { return Result{Status: 200} })
	w := New(Config{Store: st})
	w.SetSender(b, fastPolicy())
	w.Pause()
	w.Start()
	defer stop(w)
	record(t, st, "evt_p", "P", time.Now())
	w.Notify()
	time.Sleep(100 * time.Millisecond)
	if d, _ := b.snapshot(); len(d) != 0 {
		t.Fatal("delivered while paused")
	}
	w.Resume()
	waitFor(t, "delivery after resume", func() bool { d, _ := b.snapshot(); return len(d) == 1 })
}

// Stop waits for an attempt in flight and records its outcome.
func TestStopWaitsForInFlight(t *testing.T) {
	st := openStore(t)
	b := newBackend(func(string, int) Result { return Result{Status: 200} })
	b.delay = 200 * time.Millisecond
	w := New(Config{Store: st})
	w.SetSender(b, fastPolicy())
	record(t, st, "evt_s", "S", time.Now())
	w.Start()
	waitFor(t, "the attempt to start", func() bool { return w.InFlight() == 1 })
	stop(w)
	e, _, err := st.GetEvent(context.Background(), "evt_s")
	if err != nil {
		t.Fatal(err)
	}
	if e.State != ledger.EventDelivered {
		t.Fatalf("after Stop the in-flight event is %s, want delivered", e.State)
	}
}

func TestBackoff(t *testing.T) {
	first, max := 2*time.Second, 10*time.Minute
	tests := []struct {
		n    int
		u    float64
		want time.Duration
	}{
		{1, 0.999999, 2 * time.Second},
		{1, 0, time.Second},
		{2, 0.999999, 4 * time.Second},
		{5, 0.999999, 32 * time.Second},
		{9, 0.999999, 512 * time.Second},
		{10, 0.999999, max},
		{100, 0.999999, max},
		{100, 0, max / 2},
	}
	for _, tt := range tests {
		got := Backoff(tt.n, first, max, tt.u)
		if d := got - tt.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("Backoff(%d, u=%v) = %v, want %v", tt.n, tt.u, got, tt.want)
		}
	}
	// A cap near the largest duration: doubling stops at it, never wraps.
	for _, n := range []int{33, 34, 70, 1000} {
		if got := Backoff(n, first, math.MaxInt64, 0); got < math.MaxInt64/4 {
			t.Errorf("Backoff(%d, 2s, MaxInt64) = %v", n, got)
		}
	}
}

// Every delivery is logged at info level, once, with its event, order and
// attempt number (one entry per order, notification and delivery); a
// failed attempt at warn.
func TestDeliveryLogLevels(t *testing.T) {
	st := openStore(t)
	b := newBackend(func(id string, n int) Result {
		if id == "evt_flaky" && n == 1 {
			return Result{Status: 503, Response: "down"}
		}
		return Result{Status: 204}
	})
	core, logs := observer.New(zap.DebugLevel)
	w := New(Config{Store: st, Logger: zap.New(core)})
	w.SetSender(b, fastPolicy())
	w.Start()
	defer stop(w)
	now := time.Now()
	record(t, st, "evt_ok", "order1", now)
	record(t, st, "evt_flaky", "order2", now)
	w.Notify()
	waitFor(t, "both events delivered", func() bool {
		d, _ := b.snapshot()
		return len(d) == 2
	})
	waitFor(t, "both deliveries logged", func() bool {
		return logs.FilterMessage("event delivered").Len() == 2
	})
	type entry struct {
		level   zapcore.Level
		order   string
		attempt int64
	}
	got := map[string]entry{}
	for _, e := range logs.FilterMessage("event delivered").All() {
		f := e.ContextMap()
		got[f["event_id"].(string)] = entry{e.Level, f["out_trade_no"].(string), f["attempt"].(int64)}
	}
	if want := (entry{zap.InfoLevel, "order1", 1}); got["evt_ok"] != want {
		t.Errorf("evt_ok logged %+v, want %+v", got["evt_ok"], want)
	}
	if want := (entry{zap.InfoLevel, "order2", 2}); got["evt_flaky"] != want {
		t.Errorf("evt_flaky logged %+v, want %+v", got["evt_flaky"], want)
	}
	if n := logs.FilterMessage("event delivery failed; will retry").FilterLevelExact(zap.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warnings for the failed attempt, want 1", n)
	}
}

// failingRecords is a real ledger whose RecordAttempt fails while failing
// is set (a full disk: reads work, writes fail).
type failingRecords struct {
	ledger.Store
	failing *atomic.Bool
	failed  *atomic.Int64 // records refused
}

func (f failingRecords) RecordAttempt(ctx context.Context, a ledger.Attempt, o ledger.Outcome) error {
	if f.failing.Load() {
		f.failed.Add(1)
		return errors.New("database or disk is full")
	}
	return f.Store.RecordAttempt(ctx, a, o)
}

// An attempt whose outcome cannot be recorded leaves the event due in the
// ledger on its old schedule: the worker holds it back for a retry's wait
// instead of sending it again at every fetch (before: a delivered event
// was posted thousands of times a second while the store failed), and
// delivers it once the store works again.
func TestUnrecordedOutcomeHeldUntilRetry(t *testing.T) {
	st := openStore(t)
	var failing atomic.Bool
	var failed atomic.Int64
	failing.Store(true)
	record(t, st, "evt_held", "H", time.Now())
	b := newBackend(func(string, int) Result { return Result{Status: 200} })
	w := New(Config{Store: failingRecords{st, &failing, &failed}})
	// The hold is at least FirstRetry/2 (the jitter): 1 s.
	w.SetSender(b, Policy{Concurrency: 1, AttemptTimeout: time.Second, FirstRetry: 2 * time.Second, MaxInterval: 2 * time.Second, MaxAge: time.Hour})
	w.Start()
	defer stop(w)
	waitFor(t, "the first delivery", func() bool { d, _ := b.snapshot(); return d["evt_held"] >= 1 })
	waitFor(t, "its outcome refused by the store", func() bool { return failed.Load() >= 1 })
	time.Sleep(150 * time.Millisecond)
	if d, _ := b.snapshot(); d["evt_held"] != 1 {
		t.Fatalf("the event was sent %d times within 150 ms of an attempt whose outcome could not be recorded, want once", d["evt_held"])
	}
	failing.Store(false)
	waitFor(t, "the delivery recorded after the hold", func() bool {
		e, _, err := st.GetEvent(context.Background(), "evt_held")
		return err == nil && e.State == ledger.EventDelivered
	})
	if d, _ := b.snapshot(); d["evt_held"] != 2 {
		t.Fatalf("sent %d times, want twice (the unrecorded delivery, then the retry)", d["evt_held"])
	}
}

// A dead letter replayed while the backend still fails now and then gets
// a whole retry window from the replay (before: its window was measured
// from its creation, long past, so the first failure after the replay
// made it dead again at once).
func TestReplayedDeadLetterGetsAWholeWindow(t *testing.T) {
	st := openStore(t)
	var answers atomic.Int64 // 0, 1: fail (before and after the replay); then 200
	b := newBackend(func(string, int) Result {
		if answers.Add(1) <= 2 {
			return Result{Status: 503}
		}
		return Result{Status: 200}
	})
	p := fastPolicy()
	p.MaxAge = time.Hour
	w := New(Config{Store: st})
	w.SetSender(b, p)
	record(t, st, "evt_old", "O", time.Now().Add(-2*time.Hour)) // older than the window
	w.Start()
	defer stop(w)
	waitFor(t, "the dead letter", func() bool {
		e, _, err := st.GetEvent(context.Background(), "evt_old")
		return err == nil && e.State == ledger.EventDead
	})
	if err := st.Replay(context.Background(), "evt_old", time.Now()); err != nil {
		t.Fatal(err)
	}
	w.Notify()
	waitFor(t, "the replayed event delivered or dead", func() bool {
		e, _, err := st.GetEvent(context.Background(), "evt_old")
		return err == nil && e.State != ledger.EventPending
	})
	e, atts, err := st.GetEvent(context.Background(), "evt_old")
	if err != nil {
		t.Fatal(err)
	}
	if e.State != ledger.EventDelivered || e.Attempts-e.ReplayAttempts != 2 || e.Attempts != 3 || len(atts) != 3 {
		t.Fatalf("replayed event: state %s after %d attempts since the replay (%d in all, %d recorded), want delivered after 2 (3 in all)",
			e.State, e.Attempts-e.ReplayAttempts, e.Attempts, len(atts))
	}
}
