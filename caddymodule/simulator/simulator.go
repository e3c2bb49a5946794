// Package simulator mounts the simulated WeChat Pay of package wxpaysim in
// Caddy, as the wxpay_simulator handler, with a stand-in backend that
// verifies the gateway's events: the demo and the integration tests run
// against it, with no merchant account. It is a package of its own so that
// a production build (xcaddy build --with
// github.com/caddy-wxpay/caddy-wxpay) does not contain it; ./xcaddy.sh and
// cmd/caddy add it for the demo.
package simulator

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/caddymodule"
	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

func init() {
	caddy.RegisterModule(new(Simulator))
	httpcaddyfile.RegisterHandlerDirective("wxpay_simulator", parseSimulator)
	// Early in the route, as the wxpay handlers: it passes on what it
	// does not serve.
	httpcaddyfile.RegisterDirectiveOrder("wxpay_simulator", httpcaddyfile.Before, "invoke")
}

// Simulator mounts a simulated WeChat Pay server (package wxpaysim) so that
// one Caddy process can run the demo and tests without a merchant account.
// It serves WeChat's API (POST /pay/unifiedorder), the simulator's control
// routes (POST /sim/pay to pay an order, GET /sim/notifications…), and a
// stand-in backend at /backend/events that verifies the events the gateway
// delivers and lists them (GET). Other requests go to the next handler.
//
// Never mount it on a production site: it pays any order it is asked to,
// and signs notifications with the keys it is given. It signs only with
// keys given to it explicitly (merchant lines), refuses to start with a key
// that a wxpay merchant uses to talk to WeChat itself, serves loopback
// clients only unless allow_remote is set, and keeps bounded state.
type Simulator struct {
	// Multiplies WeChat's notification retry schedule (15s, 15s, 30s,
	// 3m…): 0.001 turns seconds into milliseconds. Default: 1.
	TimeScale float64 `json:"time_scale,omitempty"`

	// The merchants the simulator knows, with their keys (give the demo's
	// or a test's, never a real one). Required: the simulator never takes
	// the wxpay app's keys by itself.
	Merchants []SimulatedMerchant `json:"merchants,omitempty"`

	// Serves clients that are not on a loopback address too. Default:
	// loopback clients only (anyone who reaches the simulator can have it
	// sign notifications with its merchants' keys).
	AllowRemote bool `json:"allow_remote,omitempty"`

	// A PEM file of the CA that issues merchants' API client certificates:
	// refunds (/secapi/) are accepted only over TLS with a client
	// certificate that chains to it and names the mch_id. Without it every
	// refund is refused, as WeChat refuses one without a certificate. The
	// site must request client certificates (tls { client_auth { … } }).
	ClientCA string `json:"client_ca,omitempty"`

	// Simulators with the same name share their state (orders, payments,
	// refunds) across sites and config reloads: one site can serve the
	// API over https with client certificates, another the control routes
	// over http. Default: "default".
	Name string `json:"name,omitempty"`

	// Where a browser reaches this simulator's payment sheet, its
	// /sim/cashier route (for example http://127.0.0.1:8081/sim/cashier):
	// MWEB orders' mweb_url then point there, so that a person can pay or
	// cancel them in a browser. Default: WeChat's own address, as WeChat
	// answers it (a browser cannot pay it here).
	CashierURL string `json:"cashier_url,omitempty"`

	// The gateway's base URL (for example http://127.0.0.1:8080/wxpay):
	// the stand-in backend then also serves a demo shop at /shop/, a
	// checkout page to put behind wxpay_checkout (route /shop/* {
	// wxpay_checkout; reverse_proxy <this site> }). It queries orders
	// there with the wxpay app's api_token.
	Shop string `json:"shop,omitempty"`

	sim     *wxpaysim.Simulator
	backend *demoBackend
	shop    *demoShop
	logger  *zap.Logger
}

// simulators shares simulators by name across sites and reloads.
var simulators = caddy.NewUsagePool()

// sharedSim is a pooled simulator with its stand-in backend.
type sharedSim struct {
	sim     *wxpaysim.Simulator
	backend *demoBackend
	shop    *demoShop
}

// Destruct stops the simulator's pending notifications.
func (s *sharedSim) Destruct() error {
	s.sim.Close()
	return nil
}

// SimulatedMerchant is a merchant account the simulator accepts.
type SimulatedMerchant struct {
	// The merchant number.
	MchID string `json:"mch_id,omitempty"`
	// The API v2 key; placeholders are resolved.
	APIKey string `json:"api_key,omitempty"`
	// The app ids bound to the merchant.
	AppIDs []string `json:"app_ids,omitempty"`
	// APIv3, when the simulator also speaks it for the merchant.
	V3 *SimulatedV3 `json:"v3,omitempty"`
}

// SimulatedV3 is what the simulator needs to speak APIv3 for a merchant:
// the merchant's side (its APIv3 key, the certificate its requests are
// signed with) and WeChat's (the private halves WeChat signs with). File
// options take a path, or a placeholder that resolves to the PEM.
type SimulatedV3 struct {
	// The merchant's APIv3 key (32 characters).
	APIv3Key string `json:"api_v3_key,omitempty"`
	// The merchant's API certificate (apiclient_cert.pem): requests must
	// be signed with its key and name its serial. Required.
	MerchantCert string `json:"merchant_cert,omitempty"`
	// The WeChat Pay public key's id and the PEM of its private half,
	// which the simulator signs with (public key mode).
	PublicKeyID      string `json:"public_key_id,omitempty"`
	PublicKeyPrivate string `json:"public_key_private,omitempty"`
	// Platform certificates with their private keys (certificate mode);
	// with a public key too, the migration.
	PlatformCertificates []SimulatedPlatformCertificate `json:"platform_certificates,omitempty"`
	// During the migration, the share (0 to 1) of notifications signed
	// with the public key. Default 0.5.
	PublicKeyShare *float64 `json:"public_key_share,omitempty"`
}

// SimulatedPlatformCertificate is a platform certificate and its key.
type SimulatedPlatformCertificate struct {
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// provision builds the simulator's APIv3 side of a merchant.
func (v *SimulatedV3) provision(repl *caddy.Replacer) (*wxpaysim.MerchantV3, error) {
	out := &wxpaysim.MerchantV3{APIv3Key: strings.TrimSpace(repl.ReplaceAll(v.APIv3Key, "")), PublicKeyShare: 0.5}
	if v.PublicKeyShare != nil {
		out.PublicKeyShare = *v.PublicKeyShare
	}
	certPEM, err := caddymodule.PEMOrFile("merchant_cert", v.MerchantCert, repl)
	if err != nil {
		return nil, err
	}
	if out.MerchantCertificate, err = wxpayv3.ParseCertificate(certPEM); err != nil {
		return nil, fmt.Errorf("merchant_cert: %w", err)
	}
	if v.PublicKeyID != "" {
		out.PublicKeyID = strings.TrimSpace(repl.ReplaceAll(v.PublicKeyID, ""))
		keyPEM, err := caddymodule.PEMOrFile("wechatpay_public_key", v.PublicKeyPrivate, repl)
		if err != nil {
			return nil, err
		}
		if out.PublicKey, err = wxpayv3.ParsePrivateKey(keyPEM); err != nil {
			return nil, fmt.Errorf("wechatpay_public_key %s (its private half): %w", out.PublicKeyID, err)
		}
	}
	for _, pc := range v.PlatformCertificates {
		certPEM, err := caddymodule.PEMOrFile("platform_certificate", pc.Cert, repl)
		if err != nil {
			return nil, err
		}
		keyPEM, err := caddymodule.PEMOrFile("platform_certificate key", pc.Key, repl)
		if err != nil {
			return nil, err
		}
		var c wxpaysim.PlatformCertificate
		if c.Certificate, err = wxpayv3.ParseCertificate(certPEM); err != nil {
			return nil, fmt.Errorf("platform_certificate %s: %w", pc.Cert, err)
		}
		if c.Key, err = wxpayv3.ParsePrivateKey(keyPEM); err != nil {
			return nil, fmt.Errorf("platform_certificate %s key: %w", pc.Cert, err)
		}
		out.PlatformCertificates = append(out.PlatformCertificates, c)
	}
	if err := out.Validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// CaddyModule returns the Caddy module information.
func (*Simulator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wxpay_simulator",
		New: func() caddy.Module { return new(Simulator) },
	}
}

// Provision creates the simulator.
func (s *Simulator) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	var merchants []wxpaysim.Merchant
	for _, m := range s.Merchants {
		key := wxpay.APIKey(strings.TrimSpace(repl.ReplaceAll(m.APIKey, "")))
		if err := key.Validate(); err != nil {
			return fmt.Errorf("wxpay_simulator: merchant %s: api_key: %w", m.MchID, err)
		}
		sm := wxpaysim.Merchant{MchID: m.MchID, Key: key, AppIDs: m.AppIDs}
		if m.V3 != nil {
			v3, err := m.V3.provision(repl)
			if err != nil {
				return fmt.Errorf("wxpay_simulator: merchant %s: v3: %w", m.MchID, err)
			}
			sm.V3 = v3
		}
		merchants = append(merchants, sm)
	}
	if len(merchants) == 0 {
		return errors.New("wxpay_simulator: no merchants: list the merchants it simulates (merchant <mch_id> <api_key> <app_id>...); it never takes the wxpay app's keys by itself")
	}
	var secret []byte
	var token string
	appIface, err := ctx.AppIfConfigured("wxpay")
	switch {
	case err == nil:
		app := appIface.(*caddymodule.App)
		if err := refuseRealKeys(app, merchants, repl); err != nil {
			return err
		}
		if app.Upstream != nil {
			secret = []byte(strings.TrimSpace(repl.ReplaceAll(app.Upstream.Secret, "")))
		}
		token = strings.TrimSpace(repl.ReplaceAll(app.APIToken, ""))
	case !errors.Is(err, caddy.ErrNotConfigured):
		return fmt.Errorf("wxpay_simulator: %w", err)
	}
	for _, o := range []struct{ name, url string }{{"cashier_url", s.CashierURL}, {"shop", s.Shop}} {
		if o.url == "" {
			continue
		}
		if pu, err := url.Parse(o.url); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("wxpay_simulator: %s %q is not an absolute http(s) URL", o.name, o.url)
		}
	}
	if s.Shop != "" && token == "" {
		return errors.New("wxpay_simulator: shop: the demo shop queries orders with the wxpay app's api_token, and there is none")
	}
	var clientCAs *x509.CertPool
	if s.ClientCA != "" {
		pemData, err := os.ReadFile(s.ClientCA)
		if err != nil {
			return fmt.Errorf("wxpay_simulator: client_ca: %w", err)
		}
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(pemData) {
			return fmt.Errorf("wxpay_simulator: client_ca %s holds no PEM certificate", s.ClientCA)
		}
	}
	if s.Name == "" {
		s.Name = "default"
	}
	logger := s.logger
	v, _, err := simulators.LoadOrNew(s.Name, func() (caddy.Destructor, error) {
		backend := &demoBackend{secret: secret}
		return &sharedSim{
			sim: wxpaysim.New(wxpaysim.Config{
				Merchants: merchants,
				TimeScale: s.TimeScale,
				ClientCAs: clientCAs,
				Logf:      func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
			}),
			backend: backend,
			shop:    newDemoShop(backend),
		}, nil
	})
	if err != nil {
		return fmt.Errorf("wxpay_simulator: %w", err)
	}
	shared := v.(*sharedSim)
	// A reload may bring other merchants or another upstream secret.
	for _, m := range merchants {
		shared.sim.AddMerchant(m)
	}
	shared.backend.setSecret(secret)
	if s.CashierURL != "" {
		shared.sim.SetCashierURL(s.CashierURL)
	}
	if s.Shop != "" {
		shared.shop.configure(s.Shop, token)
		s.shop = shared.shop
	}
	s.sim, s.backend = shared.sim, shared.backend
	return nil
}

// refuseRealKeys refuses a simulator key that a merchant of the wxpay app
// uses with WeChat's own hosts: a simulator that signed with it would mint
// notifications WeChat's real merchant would accept.
func refuseRealKeys(app *caddymodule.App, sim []wxpaysim.Merchant, repl *caddy.Replacer) error {
	for _, name := range slices.Sorted(maps.Keys(app.Merchants)) {
		m := app.Merchants[name]
		endpoint := strings.TrimSpace(repl.ReplaceAll(m.Endpoint, ""))
		if endpoint == "" {
			endpoint = wxpay.DefaultEndpoint
		}
		u, err := url.Parse(endpoint)
		if err != nil || !wxpay.IsWeChatHost(u.Hostname()) {
			continue
		}
		real := []byte(strings.TrimSpace(repl.ReplaceAll(m.APIKey, "")))
		realV3 := []byte(strings.TrimSpace(repl.ReplaceAll(m.APIv3Key, "")))
		for _, sm := range sim {
			if len(real) > 0 && subtle.ConstantTimeCompare(real, []byte(sm.Key)) == 1 {
				return fmt.Errorf("wxpay_simulator: merchant %s's api_key is merchant %s's, which talks to WeChat itself: a simulator must never sign with a real key", sm.MchID, name)
			}
			if sm.V3 != nil && len(realV3) > 0 && subtle.ConstantTimeCompare(realV3, []byte(sm.V3.APIv3Key)) == 1 {
				return fmt.Errorf("wxpay_simulator: merchant %s's api_v3_key is merchant %s's, which talks to WeChat itself: a simulator must never encrypt with a real key", sm.MchID, name)
			}
		}
	}
	return nil
}

// Cleanup gives the shared simulator back; the last user stops it.
func (s *Simulator) Cleanup() error {
	if s.sim != nil {
		_, err := simulators.Delete(s.Name)
		return err
	}
	return nil
}

// ServeHTTP serves the simulator's routes and the stand-in backend.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p := r.URL.Path
	shop := s.shop != nil && (p == "/shop" || strings.HasPrefix(p, "/shop/"))
	ours := shop || strings.HasPrefix(p, "/pay/") || strings.HasPrefix(p, "/v3/") || strings.HasPrefix(p, "/sim/") || strings.HasPrefix(p, "/secapi/") || p == "/backend/events"
	if !ours {
		return next.ServeHTTP(w, r)
	}
	if !s.AllowRemote && !loopbackPeer(r) {
		http.Error(w, "wxpay_simulator serves loopback clients only (allow_remote)", http.StatusForbidden)
		return nil
	}
	switch {
	case shop:
		s.shop.ServeHTTP(w, r)
	case p == "/backend/events":
		s.backend.ServeHTTP(w, r)
	default:
		s.sim.ServeHTTP(w, r)
	}
	return nil
}

// loopbackPeer reports whether the connection's peer is on a loopback
// address (the TCP peer, not a forwarded header).
func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// demoBackend is the demo's stand-in for the merchant's backend: it
// verifies each event's signature with the upstream secret and keeps the
// last events to show them.
type demoBackend struct {
	mu     sync.Mutex
	secret []byte
	events []receivedEvent
}

func (b *demoBackend) setSecret(secret []byte) {
	b.mu.Lock()
	b.secret = secret
	b.mu.Unlock()
}

type receivedEvent struct {
	ReceivedAt string          `json:"received_at"`
	EventID    string          `json:"event_id"`
	Verified   bool            `json:"signature_verified"`
	Error      string          `json:"error,omitempty"`
	Event      json.RawMessage `json:"event,omitempty"`
}

func (b *demoBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		b.mu.Lock()
		out, _ := json.MarshalIndent(b.events, "", "  ")
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(out, '\n'))
	case http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read the event", http.StatusBadRequest)
			return
		}
		rec := receivedEvent{ReceivedAt: time.Now().UTC().Format(time.RFC3339), EventID: r.Header.Get(event.HeaderID)}
		b.mu.Lock()
		secret := b.secret
		b.mu.Unlock()
		if err := event.Verify(secret, r.Header, body, 5*time.Minute, time.Now()); err != nil {
			rec.Error = err.Error()
		} else {
			rec.Verified = true
		}
		if json.Valid(body) {
			rec.Event = body
		}
		b.mu.Lock()
		b.events = append(b.events, rec)
		if len(b.events) > 1000 {
			b.events = b.events[len(b.events)-1000:]
		}
		b.mu.Unlock()
		if !rec.Verified {
			http.Error(w, rec.Error, http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
	}
}

// eventsOf returns the events received for an order (their
// data.out_trade_no), oldest first.
func (b *demoBackend) eventsOf(outTradeNo string) []receivedEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []receivedEvent{}
	for _, rec := range b.events {
		var ev struct {
			Data struct {
				OutTradeNo string `json:"out_trade_no"`
			} `json:"data"`
		}
		if json.Unmarshal(rec.Event, &ev) == nil && ev.Data.OutTradeNo == outTradeNo {
			out = append(out, rec)
		}
	}
	return out
}

// parseSimulator parses the wxpay_simulator directive; see
// Simulator.UnmarshalCaddyfile.
func parseSimulator(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Simulator)
	return s, s.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from the wxpay_simulator
// directive:
//
//	wxpay_simulator {
//		merchant   <mch_id> <api_key> <app_id> [<app_id>...] [{
//			api_v3_key           <key>
//			merchant_cert        <apiclient_cert.pem>
//			wechatpay_public_key <PUB_KEY_ID_…> <its private key.pem>
//			platform_certificate <cert.pem> <key.pem>
//			public_key_share     <0..1>
//		}]
//		time_scale <factor>
//		client_ca  <ca.pem>
//		name       <name>
//		cashier_url <url of /sim/cashier>
//		shop       <the gateway's base URL>
//		allow_remote
//	}
//
// Each option is the field of the same name; merchant is required and may
// be repeated. A merchant's block makes the simulator speak APIv3 for it
// too (platform_certificate may be repeated).
func (s *Simulator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "time_scale":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 {
				return d.Errf("time_scale must be a positive number, got %q", v)
			}
			s.TimeScale = f
		case "client_ca":
			if !d.AllArgs(&s.ClientCA) {
				return d.ArgErr()
			}
		case "name":
			if !d.AllArgs(&s.Name) {
				return d.ArgErr()
			}
		case "cashier_url":
			if !d.AllArgs(&s.CashierURL) {
				return d.ArgErr()
			}
		case "shop":
			if !d.AllArgs(&s.Shop) {
				return d.ArgErr()
			}
		case "allow_remote":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.AllowRemote = true
		case "merchant":
			args := d.RemainingArgs()
			if len(args) < 3 {
				return d.Err("merchant needs <mch_id> <api_key> <app_id> [<app_id>...]")
			}
			m := SimulatedMerchant{MchID: args[0], APIKey: args[1], AppIDs: args[2:]}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if m.V3 == nil {
					m.V3 = new(SimulatedV3)
				}
				if err := m.V3.unmarshalOption(d); err != nil {
					return err
				}
			}
			s.Merchants = append(s.Merchants, m)
		default:
			return d.Errf("unknown wxpay_simulator option %q", d.Val())
		}
	}
	return nil
}

// unmarshalOption parses one option of a merchant's APIv3 block.
func (v *SimulatedV3) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "api_v3_key":
		if !d.AllArgs(&v.APIv3Key) {
			return d.ArgErr()
		}
	case "merchant_cert":
		if !d.AllArgs(&v.MerchantCert) {
			return d.ArgErr()
		}
	case "wechatpay_public_key":
		if !d.AllArgs(&v.PublicKeyID, &v.PublicKeyPrivate) {
			return d.Err("wechatpay_public_key <PUB_KEY_ID_…> <the private half's PEM>")
		}
	case "platform_certificate":
		var pc SimulatedPlatformCertificate
		if !d.AllArgs(&pc.Cert, &pc.Key) {
			return d.Err("platform_certificate <cert.pem> <key.pem>")
		}
		v.PlatformCertificates = append(v.PlatformCertificates, pc)
	case "public_key_share":
		var raw string
		if !d.AllArgs(&raw) {
			return d.ArgErr()
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || f < 0 || f > 1 {
			return d.Errf("public_key_share must be between 0 and 1, got %q", raw)
		}
		v.PublicKeyShare = &f
	default:
		return d.Errf("unknown merchant option %q (api_v3_key, merchant_cert, wechatpay_public_key, platform_certificate, public_key_share)", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Simulator)(nil)
	_ caddy.CleanerUpper          = (*Simulator)(nil)
	_ caddyhttp.MiddlewareHandler = (*Simulator)(nil)
	_ caddyfile.Unmarshaler       = (*Simulator)(nil)
	_ caddy.Destructor            = (*sharedSim)(nil)
)
