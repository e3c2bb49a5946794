// Package delivery delivers the events of the ledger's outbox to the
// merchant's backend: a dispatcher takes due events, at most Concurrency at
// a time and one at a time per order, sends them, and records each attempt
// and its outcome. A failed delivery is retried with exponential backoff
// and jitter until it succeeds or its age passes MaxAge, when it becomes a
// dead letter (kept and replayable).
//
// Webhook is the Sender that posts events to the backend, signed.
//
// The package has no Caddy dependency: the caddymodule package owns a
// Worker per ledger and feeds it the configured backend.
package delivery

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/ledger"
)

// Result is the backend's answer to one attempt.
type Result struct {
	Status   int    // HTTP status, 0 when none came
	Response string // the start of the answer's body
	Err      error  // a transport failure; nil when a status came
}

// Delivered reports whether the backend took the event (a 2xx).
func (r Result) Delivered() bool { return r.Err == nil && r.Status >= 200 && r.Status <= 299 }

// Sender sends one event to the backend. id and payload never change
// across the attempts of one event.
type Sender interface {
	Send(ctx context.Context, id string, payload []byte) Result
}

// Outbox is what a Worker needs of the ledger: the events due, when the
// next is due, and a place to record each attempt and its outcome.
// Package ledger implements it.
type Outbox interface {
	DueEvents(ctx context.Context, now time.Time, limit int, exclude []string, lease time.Duration) ([]*ledger.Event, error)
	NextDue(ctx context.Context) (t time.Time, ok bool, err error)
	RecordAttempt(ctx context.Context, a ledger.Attempt, o ledger.Outcome) error
	ReleaseClaims(ctx context.Context, events []*ledger.Event) error
}

// Config configures a Worker.
type Config struct {
	Store  Outbox
	Logger *zap.Logger
	// PollInterval bounds how long the dispatcher sleeps without a wake-up
	// (events recorded by another process, clock changes). Default 5s.
	PollInterval time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Observer, when set, is told every attempt (metrics).
	Observer Observer
}

// Observer is told each delivery attempt: outcome is "delivered",
// "failed" (to be retried) or "dead" (given up), d how long the backend
// took. It must be cheap and safe for concurrent use.
type Observer interface {
	Attempted(outcome string, d time.Duration)
}

// Policy is how a worker delivers; a configuration reload may change it
// together with the sender.
type Policy struct {
	// Concurrency caps the deliveries in flight (sends to the backend; an
	// attempt whose answer is being recorded no longer counts). Default 8.
	Concurrency int
	// AttemptTimeout bounds one attempt. Default 10s.
	AttemptTimeout time.Duration
	// FirstRetry is the delay before the first retry. Default 2s.
	FirstRetry time.Duration
	// MaxInterval caps the delay between attempts. Default 10m.
	MaxInterval time.Duration
	// MaxAge is the age at which an undelivered event becomes a dead
	// letter. Default 72h.
	MaxAge time.Duration
}

func (c *Policy) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 10 * time.Second
	}
	if c.FirstRetry <= 0 {
		c.FirstRetry = 2 * time.Second
	}
	if c.MaxInterval <= 0 {
		c.MaxInterval = 10 * time.Minute
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 72 * time.Hour
	}
}

func (c *Config) setDefaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Worker delivers a ledger's outbox.
type Worker struct {
	cfg      Config
	sender   atomic.Pointer[senderBox]
	logger   atomic.Pointer[zap.Logger] // cfg.Logger until SetLogger
	noSender atomic.Pointer[string]     // why there is no sender, after ClearSender
	paused   atomic.Bool

	wake chan struct{}

	mu sync.Mutex
	// inflight holds the events of the attempts in flight, from their
	// start until their outcome is recorded; sending counts those of them
	// whose Send has not returned yet (bounded by Concurrency).
	inflight map[string]bool
	sending  int
	retries  timeHeap // retries scheduled by attempts, not yet due
	// unrecorded holds the events whose attempt's outcome could not be
	// recorded (the store failed), until when they stay out of fetches:
	// the ledger still shows them due on their old schedule, and without
	// the hold the next fetch would send them again at once, over and
	// over for as long as the store fails.
	unrecorded map[string]time.Time
	started    bool
	stopped    bool
	cancel     context.CancelFunc // cancels the dispatcher
	ctx        context.Context    // lives until Stop's deadline passes
	abort      context.CancelFunc // aborts attempts in flight
	done       chan struct{}      // closed when the dispatcher returns
	attempts   sync.WaitGroup
}

type senderBox struct {
	s Sender
	p Policy
}

// New returns a worker; Start runs it.
func New(cfg Config) *Worker {
	cfg.setDefaults()
	return &Worker{
		cfg:        cfg,
		wake:       make(chan struct{}, 1),
		inflight:   map[string]bool{},
		unrecorded: map[string]time.Time{},
	}
}

// SetLogger makes the worker log to l from now on (a configuration reload
// hands the shared worker the new configuration's logger); nil: cfg.Logger.
func (w *Worker) SetLogger(l *zap.Logger) {
	w.logger.Store(l)
}

func (w *Worker) log() *zap.Logger {
	if l := w.logger.Load(); l != nil {
		return l
	}
	return w.cfg.Logger
}

// SetSender sets where events go and how. A configuration reload swaps in
// the new upstream; attempts in flight finish with the sender they started
// with. Nothing is delivered before the first SetSender.
func (w *Worker) SetSender(s Sender, p Policy) {
	p.setDefaults()
	w.mu.Lock()
	w.sender.Store(&senderBox{s: s, p: p})
	w.mu.Unlock()
	w.Notify()
}

// ClearSender stops deliveries until the next SetSender (a configuration
// with no upstream): events wait in the outbox; attempts in flight finish.
// why says so in Sending.
func (w *Worker) ClearSender(why string) {
	w.noSender.Store(&why)
	w.mu.Lock()
	w.sender.Store(nil)
	w.mu.Unlock()
	w.Notify() // the dispatcher gives its queue's claims back
}

// Sending reports whether the worker has a sender, and if not, why.
func (w *Worker) Sending() (bool, string) {
	if w.sender.Load() != nil {
		return true, ""
	}
	if why := w.noSender.Load(); why != nil {
		return false, *why
	}
	return false, "no upstream has been set yet"
}

// Start runs the dispatcher. It is a no-op when already started.
func (w *Worker) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return
	}
	w.started = true
	dctx, cancel := context.WithCancel(context.Background())
	actx, abort := context.WithCancel(context.Background())
	w.cancel, w.ctx, w.abort = cancel, actx, abort
	w.done = make(chan struct{})
	go w.dispatch(dctx)
}

// Stop stops taking new events and waits for the attempts in flight to
// finish and be recorded, up to ctx's deadline; past it they are aborted
// (an aborted attempt is recorded as failed and retried later: nothing is
// lost, and the backend may see that event again with the same id).
func (w *Worker) Stop(ctx context.Context) {
	w.mu.Lock()
	if !w.started || w.stopped {
		w.stopped = true
		w.mu.Unlock()
		return
	}
	w.stopped = true
	w.cancel()
	w.mu.Unlock()
	<-w.done
	finished := make(chan struct{})
	go func() { w.attempts.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
		w.abort()
		<-finished
	}
	w.abort()
}

// Notify wakes the dispatcher: an event was recorded or replayed.
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Pause stops new attempts; attempts in flight finish.
func (w *Worker) Pause() {
	w.mu.Lock()
	w.paused.Store(true)
	w.mu.Unlock()
	w.Notify() // the dispatcher gives its queue's claims back
}

// Resume lets attempts start again.
func (w *Worker) Resume() {
	w.paused.Store(false)
	w.Notify()
}

// Paused reports whether delivery is paused.
func (w *Worker) Paused() bool { return w.paused.Load() }

// InFlight returns the number of attempts in flight.
func (w *Worker) InFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// The dispatcher. It does not ask the store for due events on every wake-up
// (a notification recorded, an attempt finished): it keeps a queue of due
// events fetched ahead, up to queueFactor × Concurrency, starts them as
// slots free, and asks the store again only when the queue runs low and
// the store may hold more (it was notified, an attempt finished, a timer
// fell due, or the last fetch came back full). Wake-ups coalesce: under
// load one fetch serves tens of deliveries.
//
// Guarantees, as without the queue:
//   - per-order ordering: a fetch excludes the events in flight and queued,
//     and with them every other event of their orders (DueEvents), and it
//     returns only events that are first of their order; so no two events
//     of one order are ever queued or in flight at once, and an event whose
//     order has an older event pending waits for it;
//   - no duplicates: an event is in the queue, or in flight, or only in the
//     store; it leaves the in-flight set only once its attempt is recorded,
//     so a later fetch sees the recorded outcome;
//   - at most Concurrency sends at once (an attempt frees its slot when the
//     backend has answered, while its outcome is recorded); none starts
//     while paused (queued events wait); Stop drops the queue (the events
//     stay pending in the store) and waits for the attempts in flight.
//
// Several gateways on one database (PostgreSQL): a fetch claims the events
// it returns for claimLease (ledger.Store.DueEvents), long enough for each
// queued event to wait for a slot and be attempted; an event whose claim
// would end before its attempt could (a worker paused, or slower than its
// lease) is dropped from the queue instead of started: another gateway may
// take it once the claim expires, and this one fetches it again if not.
// So no event is ever sent by two gateways at once.
//
// Retries: the worker remembers the retry times its attempts scheduled and
// wakes for them; NextDue (when idle) and the poll interval cover the rest.
const (
	// queueFactor × Concurrency bounds the queue (and so, with the events
	// in flight, the exclude list of a fetch).
	queueFactor = 4
	// fetchGap is the least time between two fetches while the worker keeps
	// up (the last fetch was not full) and is not idle: notifications that
	// arrive meanwhile are fetched together. An idle worker fetches at once.
	fetchGap = 5 * time.Millisecond
	// claimMargin is what a claim keeps beyond the attempt it covers
	// (recording the outcome, clocks of two gateways that differ a
	// little).
	claimMargin = 10 * time.Second
)

// claimLease is how long a fetch claims its events for on a shared
// database: every queued event may wait for queueFactor attempts before
// its own (one slot), then be attempted.
func claimLease(p Policy) time.Duration {
	return time.Duration(queueFactor+1)*p.AttemptTimeout + claimMargin
}

func (w *Worker) dispatch(ctx context.Context) {
	defer close(w.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		queue     []*ledger.Event // fetched, not started: first of their orders, none in flight
		more      = true          // the store may hold due events not fetched yet
		backlog   bool            // the last fetch was full
		lastFetch time.Time       // wall clock (not cfg.Now, which tests may freeze)
		exclude   []string
	)
	// Stopping drops the queue: its events stay pending, and their claims
	// (several gateways on one database) are given back, so that another
	// gateway takes them at once.
	defer func() { w.release(queue) }()
	for {
		sleep := w.cfg.PollInterval
		box := w.sender.Load()
		if (box == nil || w.paused.Load()) && len(queue) > 0 {
			// Nothing starts here for now: give the queue's claims back,
			// so that another gateway on the database sends them meanwhile.
			w.release(queue)
			clear(queue)
			queue = queue[:0]
		}
		if box != nil && !w.paused.Load() {
			queue = w.startQueued(queue, box)
			c := box.p.Concurrency
			if more && len(queue) < c {
				wait := time.Duration(0)
				if !backlog && (len(queue) > 0 || w.InFlight() > 0) {
					wait = fetchGap - time.Since(lastFetch)
				}
				if wait > 0 {
					sleep = wait
				} else {
					more, lastFetch = false, time.Now()
					limit := queueFactor*c - len(queue)
					exclude = w.excludeList(exclude[:0], queue)
					due, err := w.cfg.Store.DueEvents(ctx, w.cfg.Now(), limit, exclude, claimLease(box.p))
					clear(exclude)
					switch {
					case err != nil:
						if ctx.Err() != nil {
							return
						}
						w.log().Error("reading the outbox", zap.Error(err))
						more, sleep = true, time.Second
					default:
						backlog = len(due) >= limit
						queue = append(queue, due...)
						queue = w.startQueued(queue, box)
						if d, ok := w.untilNextDue(ctx, queue, backlog); ok {
							// Not past the poll: another gateway may
							// record events meanwhile.
							sleep = min(d, w.cfg.PollInterval)
						}
					}
				}
			}
		}
		if d := w.untilRetry(); d < sleep {
			sleep = d
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(sleep, 0))
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-timer.C:
		}
		more = true
	}
}

// release gives back the claims of queued events that will not be
// attempted.
func (w *Worker) release(queue []*ledger.Event) {
	var evs []*ledger.Event
	for _, e := range queue {
		if !e.ClaimedUntil.IsZero() {
			evs = append(evs, e)
		}
	}
	if len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.cfg.Store.ReleaseClaims(ctx, evs); err != nil {
		w.log().Warn("giving back the claims of queued events; other gateways take them when the claims expire", zap.Error(err))
	}
}

// excludeList appends the IDs in flight, queued, and held after an
// outcome that could not be recorded, to dst.
func (w *Worker) excludeList(dst []string, queue []*ledger.Event) []string {
	now := w.cfg.Now()
	w.mu.Lock()
	for id := range w.inflight {
		dst = append(dst, id)
	}
	for id, until := range w.unrecorded {
		if now.Before(until) {
			dst = append(dst, id)
		} else {
			delete(w.unrecorded, id)
		}
	}
	w.mu.Unlock()
	for _, e := range queue {
		dst = append(dst, e.ID)
	}
	return dst
}

// startQueued starts attempts for the head of queue, as many as there are
// free slots, and returns the rest. An event whose claim would expire
// before its attempt ends is dropped, not started.
func (w *Worker) startQueued(queue []*ledger.Event, box *senderBox) []*ledger.Event {
	if len(queue) == 0 {
		return queue
	}
	latest := w.cfg.Now().Add(box.p.AttemptTimeout + claimMargin/2)
	keep := queue[:0]
	for _, e := range queue {
		if e.ClaimedUntil.IsZero() || !e.ClaimedUntil.Before(latest) {
			keep = append(keep, e)
		}
	}
	clear(queue[len(keep):])
	queue = keep
	if len(queue) == 0 {
		return queue
	}
	w.mu.Lock()
	n := min(box.p.Concurrency-w.sending, len(queue))
	if w.paused.Load() || w.sender.Load() != box { // Pause, SetSender and ClearSender take w.mu: nothing starts once they returned
		n = 0
	}
	if n <= 0 {
		w.mu.Unlock()
		return queue
	}
	for _, e := range queue[:n] {
		w.inflight[e.ID] = true
	}
	w.sending += n
	w.attempts.Add(n)
	w.mu.Unlock()
	for _, e := range queue[:n] {
		go w.attempt(e, box)
	}
	rest := copy(queue, queue[n:])
	clear(queue[rest:])
	return queue[:rest]
}

// untilNextDue is how long to sleep after a fetch that found all the due
// events (and started or queued them), when nothing is in flight or queued:
// until the next event falls due. ok=false: keep the default (attempts
// in flight or queued will wake the dispatcher as they finish).
func (w *Worker) untilNextDue(ctx context.Context, queue []*ledger.Event, backlog bool) (time.Duration, bool) {
	if backlog || len(queue) > 0 || w.InFlight() > 0 {
		return 0, false
	}
	next, ok, err := w.cfg.Store.NextDue(ctx)
	if err != nil || !ok {
		return 0, false
	}
	if d := next.Sub(w.cfg.Now()); d > 0 {
		return d, true
	}
	return 0, false
}

// untilRetry is how long until the earliest retry that attempts of this
// worker scheduled, so that the dispatcher wakes for it without asking the
// store; the retries due are forgotten (the wake-up they cause fetches
// them).
func (w *Worker) untilRetry() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	due := false
	for len(w.retries) > 0 && !w.retries[0].After(now) {
		heap.Pop(&w.retries)
		due = true
	}
	switch {
	case due:
		return 0
	case len(w.retries) == 0:
		return time.Duration(1<<63 - 1)
	}
	return w.retries[0].Sub(now)
}

// timeHeap is a min-heap of times (container/heap).
type timeHeap []time.Time

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *timeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (w *Worker) attempt(e *ledger.Event, box *senderBox) {
	p := box.p
	defer w.attempts.Done()
	var retryAt time.Time
	defer func() {
		w.mu.Lock()
		delete(w.inflight, e.ID)
		// Only now that the event is out of the in-flight set: the fetch
		// for the retry must not exclude it.
		if !retryAt.IsZero() {
			heap.Push(&w.retries, retryAt)
		}
		w.mu.Unlock()
		w.Notify()
	}()
	ctx, cancel := context.WithTimeout(w.ctx, p.AttemptTimeout)
	start := w.cfg.Now()
	res := box.s.Send(ctx, e.ID, e.Payload)
	cancel()
	// The backend is done with it: the slot is free for another delivery
	// while this outcome is recorded (the event stays in flight, and
	// excluded from fetches, until then).
	w.mu.Lock()
	w.sending--
	w.mu.Unlock()
	w.Notify()
	now := w.cfg.Now()
	a := ledger.Attempt{EventID: e.ID, At: start, Duration: now.Sub(start), Status: res.Status, Response: res.Response, ClaimedUntil: e.ClaimedUntil, ReplayedAt: e.ReplayedAt}
	if res.Err != nil {
		a.Error = res.Err.Error()
	} else if !res.Delivered() {
		a.Error = "backend answered " + httpStatusText(res.Status)
	}
	var out ledger.Outcome
	outcome := "failed"
	switch {
	case res.Delivered():
		out.Delivered, outcome = true, "delivered"
	case now.Sub(windowStart(e)) >= p.MaxAge:
		out.Dead, outcome = true, "dead"
	default:
		out.RetryAt = now.Add(Backoff(e.Attempts-e.ReplayAttempts+1, p.FirstRetry, p.MaxInterval, rand.Float64()))
	}
	if w.cfg.Observer != nil {
		w.cfg.Observer.Attempted(outcome, a.Duration)
	}
	// Record even when Stop aborted the attempt: use a fresh context so
	// the outcome is not lost.
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if err := w.cfg.Store.RecordAttempt(rctx, a, out); err != nil {
		// The event stays pending with its old schedule, due already: it
		// is held out of fetches for as long as a failed attempt would
		// wait, then sent again (the backend deduplicates on its id).
		retryAt = now.Add(Backoff(e.Attempts-e.ReplayAttempts+1, p.FirstRetry, p.MaxInterval, rand.Float64()))
		w.mu.Lock()
		w.unrecorded[e.ID] = retryAt
		w.mu.Unlock()
		w.log().Error("recording a delivery attempt; the event is held until its retry", zap.String("event_id", e.ID),
			zap.String("outcome", outcome), zap.Time("retry_at", retryAt), zap.Error(err))
		return
	}
	switch {
	case out.Delivered:
		// One entry per delivery, as per notification and per order.
		if ce := w.log().Check(zap.InfoLevel, "event delivered"); ce != nil {
			ce.Write(zap.String("event_id", e.ID), zap.String("type", e.Type), zap.String("out_trade_no", e.OutTradeNo),
				zap.Int("attempt", e.Attempts+1), zap.Int("status", res.Status), zap.Duration("took", a.Duration))
		}
	case out.Dead:
		w.log().Error("event gave up: dead letter (replay it from the admin API once the backend is fixed)",
			zap.String("event_id", e.ID), zap.String("type", e.Type), zap.String("mch_id", e.MchID), zap.String("out_trade_no", e.OutTradeNo),
			zap.Int("attempts", e.Attempts+1), zap.String("error", a.Error))
	default:
		retryAt = out.RetryAt
		w.log().Warn("event delivery failed; will retry", zap.String("event_id", e.ID),
			zap.Int("attempt", e.Attempts+1), zap.String("error", a.Error), zap.Time("retry_at", out.RetryAt))
	}
}

// windowStart is when an event's retry window began: its creation, or its
// last replay (an operator replays a dead letter once the backend is
// fixed; it gets a whole window again, not one attempt).
func windowStart(e *ledger.Event) time.Time {
	if e.ReplayedAt.After(e.CreatedAt) {
		return e.ReplayedAt
	}
	return e.CreatedAt
}

// Backoff returns the delay before attempt n+1 after n failed attempts:
// first * 2^(n-1), capped at max, scaled by a jitter factor in [0.5, 1]
// drawn from u in [0, 1), so that a backend coming back is not hit by every
// event at once.
func Backoff(n int, first, max time.Duration, u float64) time.Duration {
	if n < 1 {
		n = 1
	}
	d := first
	for i := 1; i < n && d < max; i++ {
		if d > max/2 { // doubling would pass max (or overflow)
			d = max
			break
		}
		d *= 2
	}
	if d > max {
		d = max
	}
	return time.Duration(float64(d) * (0.5 + u/2))
}

func httpStatusText(code int) string {
	if code == 0 {
		return "nothing"
	}
	return strconv.Itoa(code)
}

// Interface guard: package ledger's store is the worker's outbox.
var _ Outbox = ledger.Store(nil)
