package caddymodule

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the wxpay app: it owns what outlives one request — the merchants
// and their keys, the HTTP client to WeChat Pay, the upstream that receives
// events, and the token that guards the gateway's API. Configure it with
// the `wxpay` global option; the wxpay, wxpay_checkout and wxpay_simulator
// handlers use it.
type App struct {
	// Merchants by name. A handler names the merchant it serves; the
	// default name is "default".
	Merchants map[string]*Merchant `json:"merchants,omitempty"`

	// Upstream receives the gateway's signed JSON events (payment
	// notifications and the like). Required for a handler that serves
	// WeChat's notifications.
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

	merchants map[string]*merchant
	apiToken  [sha256.Size]byte
	hasToken  bool
	upstream  *upstream
	logger    *zap.Logger
	dbPath    string        // the ledger's file; "" with ack upstream
	ledger    *ledgerHandle // set by Start, never cleared: requests in flight during a stop may still use it
	release   sync.Once
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
// network calls, so that `caddy validate` works offline.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	a.merchants = make(map[string]*merchant, len(a.Merchants))
	names := make([]string, 0, len(a.Merchants))
	for name := range a.Merchants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m, err := newMerchant(name, a.Merchants[name], repl, a.logger)
		if err != nil {
			return fmt.Errorf("wxpay: merchant %s: %w", name, err)
		}
		a.merchants[name] = m
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
		p, err := st.storagePath()
		if err != nil {
			return fmt.Errorf("wxpay: %w", err)
		}
		a.dbPath = p
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
		up, err := newUpstream(a.Upstream, repl, timeout)
		if err != nil {
			return fmt.Errorf("wxpay: upstream: %w", err)
		}
		a.upstream = up
	}
	return nil
}

// Start opens the ledger (shared with a configuration still running during
// a reload) and starts delivering its outbox to this configuration's
// upstream.
func (a *App) Start() error {
	if a.dbPath != "" {
		h, err := openLedger(a.dbPath, a.logger)
		if err != nil {
			return fmt.Errorf("wxpay: %w", err)
		}
		a.ledger = h
		if a.upstream != nil {
			h.worker.SetSender(a.upstream, a.upstream.policy())
		}
		h.worker.Start()
		if rs := a.reconcileSetup(); rs != nil {
			h.reconciler.configure(rs)
		}
		a.logger.Info("ledger open", zap.String("path", a.dbPath), zap.Bool("delivering", a.upstream != nil))
	}
	active.Store(a)
	return nil
}

// Stop gives the ledger back: the last configuration using it stops its
// worker, waiting for deliveries in flight, and closes it.
func (a *App) Stop() error {
	active.CompareAndSwap(a, nil)
	if a.ledger != nil {
		a.ledger.reconciler.release(a)
	}
	return a.releaseLedger()
}

// reconcileDelay is how long after placing an order its first check comes;
// 0 when reconciliation is off.
func (a *App) reconcileDelay() time.Duration {
	if a.Reconcile != nil && a.Reconcile.Disabled {
		return 0
	}
	if a.Reconcile != nil && a.Reconcile.Delay > 0 {
		return time.Duration(a.Reconcile.Delay)
	}
	return 5 * time.Minute
}

// reconcileSetup is this configuration's setup of the job, nil when off.
func (a *App) reconcileSetup() *reconcileSetup {
	d := a.reconcileDelay()
	if d == 0 {
		return nil
	}
	byMch := make(map[string]*merchant, len(a.merchants))
	for _, m := range a.merchants {
		byMch[m.mchID] = m
	}
	return &reconcileSetup{app: a, merchants: byMch, delay: d,
		closeExpired: a.Reconcile != nil && a.Reconcile.CloseExpired, logger: a.logger.Named("reconcile")}
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
	for _, m := range a.merchants {
		m.close()
	}
	if a.upstream != nil {
		a.upstream.close()
	}
	return err
}

// merchantNamed returns a provisioned merchant.
func (a *App) merchantNamed(name string) (*merchant, error) {
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
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], a.apiToken[:]) == 1
}

// Merchant is one WeChat Pay merchant account (商户号) and how to reach
// WeChat for it.
type Merchant struct {
	// The merchant number WeChat Pay assigned (商户号), e.g. 1900000109.
	// Required.
	MchID string `json:"mch_id,omitempty"`

	// The app ids (appid of the mini program, official account or app)
	// bound to this merchant that orders may use. The first is the
	// default; an order naming another app id is refused. Required.
	AppIDs []string `json:"app_ids,omitempty"`

	// The API v2 key (32 characters, set under 账户设置 → API安全).
	// Give it as a placeholder ({env.WXPAY_API_KEY} or
	// {file./run/secrets/wxpay_key}), never inline. Required.
	APIKey string `json:"api_key,omitempty"`

	// The signature algorithm: MD5 (the default) or HMAC-SHA256.
	SignType string `json:"sign_type,omitempty"`

	// The URL WeChat sends payment notifications to: this gateway's
	// wxpay handler, e.g. https://pay.example.com/wxpay/notify. It must be
	// https and carry no query string. Required.
	NotifyURL string `json:"notify_url,omitempty"`

	// Allows a plain http notify_url, but only on a loopback address or
	// when the endpoint is not WeChat's (a simulator). For tests and the
	// demo; the gateway logs a warning.
	InsecureNotifyURL bool `json:"insecure_notify_url,omitempty"`

	// WeChat Pay's API base URL. Default: https://api.mch.weixin.qq.com.
	// Tests and the demo point it at the simulator (plain http is
	// accepted on loopback addresses only).
	Endpoint string `json:"endpoint,omitempty"`

	// How long one call to WeChat may take; past it the caller gets 504.
	// Default: 6s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// The merchant's API client certificate, which refunds need (mutual
	// TLS): the PEM certificate file (apiclient_cert.pem), or a PKCS#12
	// file (apiclient_cert.p12, whose password is the mch_id).
	ClientCert string `json:"client_cert,omitempty"`

	// The PEM private key file of ClientCert (apiclient_key.pem); empty
	// with a PKCS#12 file.
	ClientKey string `json:"client_key,omitempty"`

	// The URL WeChat sends refund notifications to. Default: notify_url
	// followed by /refund (e.g. https://pay.example.com/wxpay/notify/refund),
	// which the wxpay handler serves.
	RefundNotifyURL string `json:"refund_notify_url,omitempty"`

	// WeChat's disaster-recovery twin, tried once when a call that is safe
	// to repeat (queries, close, refunds, bills) fails on the network or
	// with a 5xx. Default: https://api2.mch.weixin.qq.com when endpoint is
	// WeChat's own host, none otherwise; "off" disables it.
	FailoverEndpoint string `json:"failover_endpoint,omitempty"`
}

// merchant is a provisioned Merchant.
type merchant struct {
	name      string
	mchID     string
	appIDs    []string
	key       wxpay.APIKey
	signType  wxpay.SignType
	notifyURL string
	client    *wxpay.Client
	http      *http.Client
	tlsHTTP   *http.Client // with the client certificate; nil without one

	refundNotifyURL string
}

func newMerchant(name string, cfg *Merchant, repl *caddy.Replacer, logger *zap.Logger) (*merchant, error) {
	if cfg == nil {
		return nil, errors.New("empty configuration")
	}
	m := &merchant{name: name}
	m.mchID = strings.TrimSpace(repl.ReplaceAll(cfg.MchID, ""))
	if m.mchID == "" {
		return nil, fmt.Errorf("mch_id is required%s", emptyFrom(cfg.MchID))
	}
	for _, c := range m.mchID {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("mch_id %q is not a merchant number (digits only)", m.mchID)
		}
	}
	for _, raw := range cfg.AppIDs {
		// A placeholder may resolve to several ids: "wx1 wx2" or "wx1,wx2".
		ids := strings.FieldsFunc(repl.ReplaceAll(raw, ""), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
		m.appIDs = append(m.appIDs, ids...)
	}
	if len(m.appIDs) == 0 {
		return nil, errors.New("app_id is required: list the app ids bound to this merchant")
	}
	key := wxpay.APIKey(strings.TrimSpace(repl.ReplaceAll(cfg.APIKey, "")))
	if cfg.APIKey == "" {
		return nil, errors.New("api_key is required")
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("api_key %s: %w", describeSecretSource(cfg.APIKey), err)
	}
	m.key = key
	st, err := wxpay.ParseSignType(strings.ToUpper(strings.TrimSpace(cfg.SignType)))
	if err != nil {
		return nil, fmt.Errorf("sign_type: %w", err)
	}
	m.signType = st

	endpoint := strings.TrimSpace(repl.ReplaceAll(cfg.Endpoint, ""))
	if endpoint == "" {
		endpoint = wxpay.DefaultEndpoint
	}
	eu, err := url.Parse(endpoint)
	if err != nil || eu.Host == "" || (eu.Scheme != "https" && eu.Scheme != "http") {
		return nil, fmt.Errorf("endpoint %q is not an http(s) URL", endpoint)
	}
	if eu.Scheme == "http" && !isLoopback(eu.Hostname()) {
		return nil, fmt.Errorf("endpoint %q: plain http is allowed on loopback addresses only", endpoint)
	}
	weChatHost := strings.HasSuffix(eu.Hostname(), ".weixin.qq.com")

	m.notifyURL = strings.TrimSpace(repl.ReplaceAll(cfg.NotifyURL, ""))
	nu, err := url.Parse(m.notifyURL)
	switch {
	case m.notifyURL == "":
		return nil, errors.New("notify_url is required")
	case err != nil || nu.Host == "" || !nu.IsAbs():
		return nil, fmt.Errorf("notify_url %q is not an absolute URL", m.notifyURL)
	case nu.RawQuery != "" || nu.ForceQuery:
		return nil, fmt.Errorf("notify_url %q has a query string, which WeChat drops", m.notifyURL)
	case nu.Scheme == "https":
	case nu.Scheme != "http":
		return nil, fmt.Errorf("notify_url %q must be https", m.notifyURL)
	case !cfg.InsecureNotifyURL:
		return nil, fmt.Errorf("notify_url %q must be https (insecure_notify_url allows http on a loopback address or with a simulator endpoint)", m.notifyURL)
	case !isLoopback(nu.Hostname()) && weChatHost:
		return nil, fmt.Errorf("notify_url %q: insecure_notify_url allows http only on a loopback address or with a simulator endpoint", m.notifyURL)
	default:
		logger.Warn("plain http notify_url allowed by insecure_notify_url: for tests and demos only",
			zap.String("merchant", name), zap.String("notify_url", m.notifyURL))
	}

	timeout := time.Duration(cfg.Timeout)
	if timeout == 0 {
		timeout = 6 * time.Second
	}
	if timeout < 0 {
		return nil, fmt.Errorf("timeout %s is negative", timeout)
	}
	m.refundNotifyURL = strings.TrimSpace(repl.ReplaceAll(cfg.RefundNotifyURL, ""))
	if m.refundNotifyURL == "" {
		m.refundNotifyURL = strings.TrimSuffix(m.notifyURL, "/") + "/refund"
	} else if u, err := url.Parse(m.refundNotifyURL); err != nil || u.Host == "" || u.RawQuery != "" || (u.Scheme != "https" && !(u.Scheme == "http" && cfg.InsecureNotifyURL)) {
		return nil, fmt.Errorf("refund_notify_url %q must be an https URL without a query string", m.refundNotifyURL)
	}

	failover := strings.TrimSpace(repl.ReplaceAll(cfg.FailoverEndpoint, ""))
	switch failover {
	case "":
		failover = wxpay.DefaultFailoverEndpoint(endpoint)
	case "off":
		failover = ""
	default:
		if fu, err := url.Parse(failover); err != nil || fu.Host == "" || (fu.Scheme != "https" && !(fu.Scheme == "http" && isLoopback(fu.Hostname()))) {
			return nil, fmt.Errorf("failover_endpoint %q is not an https URL (or http on loopback)", failover)
		}
	}

	m.http = wxpay.NewHTTPClient(256)
	m.client = &wxpay.Client{
		MchID: m.mchID, Key: m.key, SignType: m.signType,
		Endpoint: endpoint, HTTPClient: m.http, Timeout: timeout,
		FailoverEndpoint: failover,
		OnFailover: func(op string, err error) {
			logger.Warn("WeChat Pay call failed over to the disaster-recovery endpoint",
				zap.String("merchant", name), zap.String("op", op), zap.String("failover_endpoint", failover), zap.Error(err))
		},
	}
	if cfg.ClientCert != "" {
		cert, err := loadClientCert(repl.ReplaceAll(cfg.ClientCert, ""), repl.ReplaceAll(cfg.ClientKey, ""), m.mchID)
		if err != nil {
			return nil, err
		}
		m.tlsHTTP = wxpay.NewMTLSHTTPClient(cert, 64)
		m.client.TLSHTTPClient = m.tlsHTTP
	} else if cfg.ClientKey != "" {
		return nil, errors.New("client_key without client_cert")
	}
	return m, nil
}

// loadClientCert reads the merchant's client certificate: PEM certificate
// and key files, or one PKCS#12 file whose password is the mch_id.
func loadClientCert(certFile, keyFile, mchID string) (tls.Certificate, error) {
	certData, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client_cert: %w", err)
	}
	if keyFile == "" {
		cert, err := wxpay.LoadPKCS12(certData, mchID)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("client_cert %s (PKCS#12, password the mch_id): %w", certFile, err)
		}
		return cert, nil
	}
	keyData, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client_key: %w", err)
	}
	cert, err := wxpay.LoadClientCertificate(certData, keyData)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client_cert %s with client_key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// hasAppID reports whether id is one of the merchant's app ids.
func (m *merchant) hasAppID(id string) bool {
	for _, a := range m.appIDs {
		if a == id {
			return true
		}
	}
	return false
}

func (m *merchant) close() {
	if m.http != nil {
		m.http.CloseIdleConnections()
	}
	if m.tlsHTTP != nil {
		m.tlsHTTP.CloseIdleConnections()
	}
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// describeSecretSource says where a secret came from without revealing it:
// the placeholder text when it is one, "(inline)" otherwise.
func describeSecretSource(raw string) string {
	if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") && !strings.Contains(raw[1:len(raw)-1], "{") {
		return "from " + raw
	}
	return "(given inline)"
}

func emptyFrom(raw string) string {
	if raw == "" {
		return ""
	}
	return fmt.Sprintf(" (%s resolved to nothing)", raw)
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
