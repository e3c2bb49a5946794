package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the wxpay app: it owns what outlives one request — the merchants
// and their keys, the HTTP clients to WeChat Pay, the backend that receives
// events, the ledger, and the token that guards the gateway's API.
// Configure it with the `wxpay` global option; the wxpay and
// wxpay_checkout handlers use it.
type App struct {
	// Merchants by name. A handler names the merchant it serves; the
	// default name is "default".
	Merchants map[string]*Merchant `json:"merchants,omitempty"`

	// Upstream is the backend that receives the gateway's signed JSON
	// events (payment and refund notifications). Required for a handler
	// that serves WeChat's notifications.
	Upstream *Upstream `json:"upstream,omitempty"`

	// APIToken guards the gateway's API (placing orders and the like):
	// callers send `Authorization: Bearer <api_token>`. Required when a
	// wxpay handler serves those routes. Placeholders such as
	// {env.WXPAY_API_TOKEN} or {file./run/secrets/token} are resolved
	// when the config loads. It is compared in constant time.
	APIToken string `json:"api_token,omitempty"`

	// Where orders and events are kept. Default: an embedded SQLite
	// database under Caddy's data directory.
	Storage *Storage `json:"storage,omitempty"`

	// When WeChat is told that a notification was received: "stored"
	// (the default) once the event is stored durably, after which the
	// gateway delivers it to the upstream with retries; or "upstream"
	// once the upstream took it, keeping no local state (WeChat's own
	// retries, about 24 hours, are then the only ones).
	Ack string `json:"ack,omitempty"`

	// The reconciliation job, on by default with a ledger.
	Reconcile *Reconcile `json:"reconcile,omitempty"`

	merchants map[string]*gateway.Merchant
	runtimes  []*merchantRuntime // the merchants' background work and connections
	apiToken  [sha256.Size]byte
	hasToken  bool
	webhook   *delivery.Webhook // nil without an upstream
	policy    delivery.Policy
	storage   *storageLocation // nil with ack upstream
	logger    *zap.Logger
	now       func() time.Time

	// Set by Start; ready is closed then.
	service atomic.Pointer[gateway.Service]
	ready   chan struct{}
	ctx     caddy.Context // the configuration's, for the start-up checks
	ledger  *ledgerHandle // never cleared: requests in flight during a stop may still use it
	release sync.Once

	// replaced is the configuration running when this one started (nil
	// for the first), until this one stops; stopped is set by Stop.
	replaced *App
	stopped  atomic.Bool
	// calls counts the requests this configuration's handlers are
	// serving (enter, leave): Stop lets them finish (up to stopWait)
	// before it closes the ledger, whatever order Caddy stops its apps in;
	// closing, set then, turns new ones away so that the count drains
	// while the servers still take requests.
	calls          atomic.Int64
	closing        atomic.Bool
	reconcileSetup *gateway.ReconcileSetup // set by Start when reconciling
}

// active is the app of the running configuration, for the admin API, which
// Caddy provisions without configuration and before the apps.
var active atomic.Pointer[App]

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "wxpay",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves secrets and checks the configuration. It makes no
// network calls and opens no database, so that `caddy validate` works
// offline.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ready = make(chan struct{})
	if a.now == nil {
		a.now = time.Now
	}
	a.ctx = ctx
	if err := registerMetrics(ctx); err != nil {
		return fmt.Errorf("wxpay: registering metrics: %w", err)
	}
	repl := caddy.NewReplacer()
	a.merchants = make(map[string]*gateway.Merchant, len(a.Merchants))
	names := make([]string, 0, len(a.Merchants))
	for name := range a.Merchants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m, rt, err := a.Merchants[name].provision(ctx, name, repl, a.logger)
		if err != nil {
			return fmt.Errorf("wxpay: merchant %s: %w", name, err)
		}
		a.merchants[name] = m
		a.runtimes = append(a.runtimes, rt)
	}
	if a.APIToken != "" {
		tok := strings.TrimSpace(repl.ReplaceAll(a.APIToken, ""))
		if tok == "" {
			return fmt.Errorf("wxpay: api_token %s is empty once resolved", describeSecretSource(a.APIToken))
		}
		if len(tok) < 16 {
			return fmt.Errorf("wxpay: api_token is %d characters; use at least 16 random characters", len(tok))
		}
		a.apiToken = sha256.Sum256([]byte(tok))
		a.hasToken = true
	}
	switch a.Ack {
	case "", "stored":
		a.Ack = "stored"
		st := a.Storage
		if st == nil {
			st = new(Storage)
		}
		loc, err := st.location(repl)
		if err != nil {
			return fmt.Errorf("wxpay: %w", err)
		}
		a.storage = loc
	case "upstream":
		if a.Storage != nil {
			return errors.New("wxpay: ack upstream keeps no local state; remove the storage option, or use ack stored")
		}
	default:
		return fmt.Errorf("wxpay: ack %q: want stored or upstream", a.Ack)
	}
	if a.Upstream != nil {
		timeout := 10 * time.Second
		if a.Ack == "upstream" {
			timeout = 5 * time.Second
		}
		wh, policy, err := a.Upstream.provision(repl, timeout, a.now)
		if err != nil {
			return fmt.Errorf("wxpay: upstream: %w", err)
		}
		a.webhook, a.policy = wh, policy
	}
	return nil
}

// Start opens the ledger (shared with a configuration still running during
// a reload), starts delivering its outbox to this configuration's
// upstream, and starts the service the handlers use.
func (a *App) Start() error {
	cfg := gateway.Config{Logger: a.logger, Now: a.now, Observer: metricsObserver{}, OpenIDKey: a.openIDKey()}
	if a.storage != nil {
		h, err := openLedger(a.storage, a.logger)
		if err != nil {
			return fmt.Errorf("wxpay: %w", err)
		}
		a.ledger = h
		// A ledger opened anew under another name (a rotated DSN, another
		// spelling of the path) keeps the running configuration's pause.
		if prev := active.Load(); prev != nil && prev.ledger != nil && prev.ledger != h && prev.ledger.worker.Paused() {
			h.worker.Pause()
		}
		a.takeWorker()
		h.worker.Start()
		cfg.Ledger, cfg.Outbox = h.store, h.worker
		cfg.ReconcileDelay = a.Reconcile.delay()
		a.logger.Info("ledger open", zap.String("storage", a.storage.String()), zap.Bool("delivering", a.webhook != nil))
	} else if a.webhook != nil {
		cfg.Direct = a.webhook
	}
	for _, rt := range a.runtimes {
		if h := a.ledger; h != nil {
			rt.lease = func(ctx context.Context, name string, ttl time.Duration) bool {
				ok, err := h.store.TryLease(ctx, name, h.holder, time.Now(), ttl)
				if err != nil {
					a.logger.Warn("asking the ledger for a lease; taking the turn", zap.String("lease", name), zap.Error(err))
					return true
				}
				return ok
			}
		}
		rt.start()
	}
	checkSites(a.ctx, a.logger, a.runtimes)
	svc := gateway.New(cfg)
	a.service.Store(svc)
	close(a.ready)
	if a.ledger != nil && cfg.ReconcileDelay > 0 {
		byMch := make(map[string]*gateway.Merchant, len(a.merchants))
		for _, m := range a.merchants {
			byMch[m.MchID] = m
		}
		a.reconcileSetup = &gateway.ReconcileSetup{
			Owner: a, Service: svc, Merchants: byMch, Delay: cfg.ReconcileDelay,
			CloseExpired: a.Reconcile != nil && a.Reconcile.CloseExpired, Logger: a.logger.Named("reconcile"),
		}
		a.ledger.reconciler.Configure(a.reconcileSetup)
	}
	a.replaced = active.Swap(a)
	return nil
}

// takeWorker points the ledger's delivery worker, shared with the
// configuration this one replaces, at this configuration: its upstream
// (with none, events wait in the outbox) and its logger.
func (a *App) takeWorker() {
	h := a.ledger
	if a.webhook != nil {
		h.worker.SetSender(a.webhook, a.policy)
	} else {
		h.worker.ClearSender("the running configuration has no upstream: events wait in the ledger")
	}
	h.worker.SetLogger(a.logger.Named("delivery"))
}

// Stop gives the ledger back: the last configuration using it stops its
// worker, waiting for deliveries in flight, and closes it.
//
// Caddy stops a configuration in two cases: after the next one has
// started (a reload: the next one is running, with the shared worker and
// reconciliation its own already), or because the next one failed to
// start after this one did (a failed reload: Caddy stops the new apps and
// keeps the previous configuration running). In the second case this one
// is still the running one, and the configuration it replaced, still
// running, gets back what this Start took: the worker, the reconciliation
// and the admin API.
func (a *App) Stop() error {
	a.stopped.Store(true)
	if a.ledger != nil && a.ledger.last() {
		// The ledger closes with this release (Caddy stops, rather than
		// reloads): requests that come now are turned away (503, WeChat
		// and callers try again), and those in flight finish with it.
		a.closing.Store(true)
		a.waitForCalls(stopWait)
	}
	prev := a.replaced
	a.replaced = nil // the chain of replaced configurations is not kept
	if a.ledger != nil {
		a.ledger.reconciler.Release(a)
	}
	if active.CompareAndSwap(a, nil) && prev != nil && !prev.stopped.Load() {
		prev.resume()
	}
	return a.releaseLedger()
}

// stopWait bounds how long Stop waits for the requests in flight: a call
// to WeChat ends within its timeout (6 s by default) and the ledger's
// writes within theirs.
const stopWait = 15 * time.Second

// enter counts a request in, unless the ledger is closing (false: answer
// it errStopping). The count is raised before closing is read, and Stop
// sets closing before it reads the count: a request is either counted in
// time or turned away.
func (a *App) enter() bool {
	a.calls.Add(1)
	if a.closing.Load() {
		a.calls.Add(-1)
		return false
	}
	return true
}

// leave counts a request out.
func (a *App) leave() { a.calls.Add(-1) }

// errStopping answers a request that comes while Caddy stops.
var errStopping = &gateway.Error{Status: http.StatusServiceUnavailable, Code: "STOPPING", Message: "the gateway is stopping; try again"}

// waitForCalls waits until no handler of a is serving a request, or d has
// passed.
func (a *App) waitForCalls(d time.Duration) {
	deadline := time.Now().Add(d)
	for a.calls.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := a.calls.Load(); n > 0 {
		a.logger.Warn("stopping with requests still in flight; they may fail", zap.Int64("requests", n))
	}
}

// resume makes a the running configuration again, after the one that
// replaced it failed to start.
func (a *App) resume() {
	if a.ledger != nil {
		a.takeWorker()
		if a.reconcileSetup != nil {
			a.ledger.reconciler.Configure(a.reconcileSetup)
		}
	}
	active.CompareAndSwap(nil, a)
	a.logger.Warn("the new configuration failed to start: this one runs on, and delivers, reconciles and answers the admin API again")
}

func (a *App) releaseLedger() error {
	if a.ledger == nil {
		return nil
	}
	var err error
	a.release.Do(func() { err = a.ledger.release() })
	return err
}

// Cleanup releases what the app holds.
func (a *App) Cleanup() error {
	err := a.releaseLedger()
	for _, rt := range a.runtimes {
		rt.stop()
	}
	if a.webhook != nil {
		a.webhook.Close()
	}
	return err
}

// startWait bounds how long a request that arrives while the app starts
// waits for it.
const startWait = 10 * time.Second

// errStarting answers a request that came while the app was starting and
// that start did not end in time.
var errStarting = &gateway.Error{Status: http.StatusServiceUnavailable, Code: "STARTING", Message: "the gateway is starting; try again"}

// serviceFor returns the running service. Caddy starts its apps in no
// particular order, so the HTTP servers may take requests a moment before
// this app has opened its ledger: such a request waits for the start.
func (a *App) serviceFor(ctx context.Context) (*gateway.Service, error) {
	if s := a.service.Load(); s != nil {
		return s, nil
	}
	t := time.NewTimer(startWait)
	defer t.Stop()
	select {
	case <-a.ready:
		return a.service.Load(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errStarting
	}
}

// merchantNamed returns a provisioned merchant.
func (a *App) merchantNamed(name string) (*gateway.Merchant, error) {
	if m, ok := a.merchants[name]; ok {
		return m, nil
	}
	if len(a.merchants) == 0 {
		return nil, fmt.Errorf("no merchant named %q: configure one in the wxpay global option (merchant %s { ... })", name, name)
	}
	known := make([]string, 0, len(a.merchants))
	for n := range a.merchants {
		known = append(known, n)
	}
	sort.Strings(known)
	return nil, fmt.Errorf("no merchant named %q (configured: %s)", name, strings.Join(known, ", "))
}

// authorized reports whether r carries the API token, comparing digests in
// constant time so that neither the token nor its length leaks.
func (a *App) authorized(r *http.Request) bool {
	if !a.hasToken {
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], a.apiToken[:]) == 1
}

// describeSecretSource says where a secret came from without revealing it:
// the placeholder text when it is one, "(given inline)" otherwise.
func describeSecretSource(raw string) string {
	if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") && !strings.Contains(raw[1:len(raw)-1], "{") {
		return "from " + raw
	}
	return "(given inline)"
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
