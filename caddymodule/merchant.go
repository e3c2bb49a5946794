package caddymodule

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv2"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// Merchant is one WeChat Pay merchant account (商户号) and how to reach
// WeChat for it.
type Merchant struct {
	// The merchant number WeChat Pay assigned (商户号), e.g. 1900000109.
	// Required.
	MchID string `json:"mch_id,omitempty"`

	// The app ids (appid of the mini program, official account or app)
	// bound to this merchant that orders may use. The first is the
	// default; an order naming another app id is refused. Required. A
	// placeholder may resolve to several ids, separated by spaces or
	// commas.
	AppIDs []string `json:"app_ids,omitempty"`

	// The API v2 key (32 characters, set under 账户设置 → API安全).
	// Give it as a placeholder ({env.WXPAY_API_KEY} or
	// {file./run/secrets/wxpay_key}), never inline. Required with API v2;
	// optional with v3, where it lets v2 notifications of orders placed
	// before the switch still be verified.
	APIKey string `json:"api_key,omitempty"`

	// The WeChat Pay API version the merchant's calls use: v2 (XML, the
	// default) or v3 (JSON, RSA). Switching is a configuration change: the
	// gateway's routes, JSON and events stay the same. On v3, a merchant
	// that keeps api_key also takes API v2 notifications still arriving
	// for orders placed before the switch.
	APIVersion string `json:"api_version,omitempty"`

	// The APIv3 key (32 characters, set under 账户中心 → API安全 → 设置
	// APIv3密钥), which decrypts APIv3 notifications and platform
	// certificates. Give it as a placeholder. Required with api_version
	// v3.
	APIv3Key string `json:"api_v3_key,omitempty"`

	// The merchant's API private key (apiclient_key.pem, PKCS#8 or
	// PKCS#1, RSA-2048 or more), which signs APIv3 requests and client pay
	// parameters: a file path, or a placeholder that resolves to the PEM
	// itself ({file./etc/wxpay/apiclient_key.pem}). Required with v3.
	PrivateKey string `json:"private_key,omitempty"`

	// The serial number of the merchant's API certificate
	// (apiclient_cert.pem), as the merchant platform shows it (证书序列号)
	// or `openssl x509 -noout -serial` prints it (its "serial=" prefix may
	// be left on). With v3, either this or merchant_cert is required; with
	// both, they must agree.
	MchSerial string `json:"mch_serial,omitempty"`

	// The merchant's API certificate file (apiclient_cert.pem), from
	// which the serial is read and checked against private_key.
	MerchantCert string `json:"merchant_cert,omitempty"`

	// The WeChat Pay public key's id (PUB_KEY_ID_…, 微信支付公钥ID) and
	// its PEM (a file path, or a placeholder resolving to the PEM), from
	// 账户中心 → API安全 → 微信支付公钥. Merchants opened since late
	// 2024 verify WeChat's answers and notifications with it alone.
	WechatpayPublicKeyID string `json:"wechatpay_public_key_id,omitempty"`
	WechatpayPublicKey   string `json:"wechatpay_public_key,omitempty"`

	// Platform certificates (平台证书): "auto" downloads them from
	// WeChat (GET /v3/certificates), keeps them in Caddy's storage and
	// refreshes them; "off" does not. Default: auto without a public key,
	// off with one. With both (a migration), an answer or notification is
	// verified with the key its Wechatpay-Serial names.
	PlatformCertificates string `json:"platform_certificates,omitempty"`

	// The signature algorithm: MD5 (the default) or HMAC-SHA256.
	SignType string `json:"sign_type,omitempty"`

	// Pins the signature algorithm of payment notifications: with
	// HMAC-SHA256, a notification signed MD5 is refused, however valid its
	// signature, and WeChat retries it. (WeChat names no sign_type in the
	// notifications of an order placed with HMAC-SHA256: the sign's 64 hex
	// digits say which it is, and it is verified as such.) WeChat signs an
	// order's notifications with the sign type the order was placed with,
	// so this needs sign_type HMAC-SHA256, and orders placed otherwise
	// (elsewhere, or before the switch) are refused too. Default: any (MD5
	// or HMAC-SHA256).
	NotifySignType string `json:"notify_sign_type,omitempty"`

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
	// A bill's download may take longer, as long as its bytes keep coming:
	// this bounds each stall. Default: 6s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// The merchant's API client certificate, which refunds need (mutual
	// TLS): the PEM certificate file (apiclient_cert.pem), or a PKCS#12
	// file (apiclient_cert.p12, whose password is the mch_id). A
	// placeholder may give the PEM itself ({env.…}, {file.…}).
	ClientCert string `json:"client_cert,omitempty"`

	// The PEM private key file of ClientCert (apiclient_key.pem), or the
	// PEM itself from a placeholder; empty with a PKCS#12 file. Errors
	// never show it.
	ClientKey string `json:"client_key,omitempty"`

	// The URL WeChat sends refund notifications to. Default: notify_url
	// followed by /refund (e.g. https://pay.example.com/wxpay/notify/refund),
	// which the wxpay handler serves.
	RefundNotifyURL string `json:"refund_notify_url,omitempty"`

	// WeChat's disaster-recovery twin, tried once when a call that is safe
	// to repeat (queries, close, refunds, bills; on APIv3 also the platform
	// certificates' download) fails on the network or with a 5xx, on API
	// v2 and APIv3 alike; placing an order never is. Default:
	// https://api2.mch.weixin.qq.com when endpoint is WeChat's own host,
	// none otherwise; "off" disables it.
	FailoverEndpoint string `json:"failover_endpoint,omitempty"`

	// The JSAPI pay directories (支付授权目录) configured on the merchant
	// platform: the https URL directories (ending in /) of the pages that
	// call WeChat's payment. JSAPI payments from a page outside them fail
	// in the payer's WeChat. The gateway does not send them anywhere: at
	// start it checks that their hosts, like notify_url's, are sites this
	// Caddy serves with automatic HTTPS, and warns of each that is not.
	PayDirectories []string `json:"pay_directories,omitempty"`

	// The secrets of the merchant's mini programs, by app id (开发管理 →
	// 开发设置 → AppSecret), best given as placeholders: with one, GET
	// /wxpay/openid/miniprogram?code= exchanges the app's wx.login code
	// for the user's openid (jscode2session), in a signed short-lived
	// form that orders take as openid_token. The app id must be one of
	// app_ids.
	AppSecrets map[string]string `json:"app_secrets,omitempty"`

	// WeChat's platform API, which answers for openids. Default:
	// https://api.weixin.qq.com; tests and the demo point it at the
	// simulator.
	SNSEndpoint string `json:"sns_endpoint,omitempty"`

	// WeChat's web authorisation, where GET /wxpay/oauth/start sends an
	// official account's payer for the openid (snsapi_base). Default:
	// https://open.weixin.qq.com; tests point it at the simulator.
	OAuthEndpoint string `json:"oauth_endpoint,omitempty"`
}

// provision checks the configuration, resolves its secrets and builds the
// merchant as the gateway serves it, with the API version that speaks for
// it; rt holds what lives with the app (background work, connections).
// It makes no network call.
func (cfg *Merchant) provision(ctx caddy.Context, name string, repl *caddy.Replacer, logger *zap.Logger) (m *gateway.Merchant, rt *merchantRuntime, err error) {
	if cfg == nil {
		return nil, nil, errors.New("empty configuration")
	}
	m = &gateway.Merchant{Name: name}
	m.MchID = strings.TrimSpace(repl.ReplaceAll(cfg.MchID, ""))
	if m.MchID == "" {
		return nil, nil, fmt.Errorf("mch_id is required%s", emptyFrom(cfg.MchID))
	}
	for _, c := range m.MchID {
		if c < '0' || c > '9' {
			return nil, nil, fmt.Errorf("mch_id %q is not a merchant number (digits only)", m.MchID)
		}
	}
	m.AppIDs = cfg.ResolveAppIDs(repl)
	if len(m.AppIDs) == 0 {
		return nil, nil, errors.New("app_id is required: list the app ids bound to this merchant")
	}
	version := strings.ToLower(strings.TrimSpace(cfg.APIVersion))
	switch version {
	case "", "v2":
		version = "v2"
	case "v3":
	default:
		return nil, nil, fmt.Errorf("api_version %q: want v2 or v3", cfg.APIVersion)
	}
	key := wxpay.APIKey(strings.TrimSpace(repl.ReplaceAll(cfg.APIKey, "")))
	switch {
	case cfg.APIKey == "" && version == "v2":
		return nil, nil, errors.New("api_key is required (API v2; api_version v3 uses api_v3_key and private_key instead)")
	case cfg.APIKey != "":
		if err := key.Validate(); err != nil {
			return nil, nil, fmt.Errorf("api_key %s: %w", describeSecretSource(cfg.APIKey), err)
		}
	}
	st, err := wxpay.ParseSignType(strings.ToUpper(strings.TrimSpace(cfg.SignType)))
	if err != nil {
		return nil, nil, fmt.Errorf("sign_type: %w", err)
	}
	var opts []apiv2.Option
	switch nst := strings.ToUpper(strings.TrimSpace(cfg.NotifySignType)); nst {
	case "", "ANY":
	case string(wxpay.SignTypeHMACSHA256):
		if st != wxpay.SignTypeHMACSHA256 {
			return nil, nil, errors.New("notify_sign_type HMAC-SHA256 needs sign_type HMAC-SHA256: WeChat signs an order's notifications with the sign type the order was placed with")
		}
		opts = append(opts, apiv2.RequireNotifySignType(wxpay.SignTypeHMACSHA256))
	default:
		return nil, nil, fmt.Errorf("notify_sign_type %q: want HMAC-SHA256 (or any, the default)", cfg.NotifySignType)
	}

	endpoint := strings.TrimSpace(repl.ReplaceAll(cfg.Endpoint, ""))
	if endpoint == "" {
		endpoint = wxpay.DefaultEndpoint
	}
	eu, err := url.Parse(endpoint)
	if err != nil || eu.Host == "" || (eu.Scheme != "https" && eu.Scheme != "http") {
		return nil, nil, fmt.Errorf("endpoint %q is not an http(s) URL", endpoint)
	}
	if eu.Scheme == "http" && !gateway.IsLoopback(eu.Hostname()) {
		return nil, nil, fmt.Errorf("endpoint %q: plain http is allowed on loopback addresses only", endpoint)
	}
	switch {
	case !cfg.InsecureNotifyURL:
		m.HTTPNotify = gateway.HTTPNotifyNever
	case wxpay.IsWeChatHost(eu.Hostname()):
		m.HTTPNotify = gateway.HTTPNotifyLoopback
	default:
		m.HTTPNotify = gateway.HTTPNotifyAny
	}
	m.NotifyURL = strings.TrimSpace(repl.ReplaceAll(cfg.NotifyURL, ""))
	if err := gateway.CheckNotifyURL("notify_url", m.NotifyURL, m.HTTPNotify); err != nil {
		return nil, nil, err
	}
	if strings.HasPrefix(m.NotifyURL, "http:") {
		logger.Warn("plain http notify_url allowed by insecure_notify_url: for tests and demos only",
			zap.String("merchant", name), zap.String("notify_url", m.NotifyURL))
	}

	timeout := time.Duration(cfg.Timeout)
	if timeout == 0 {
		timeout = 6 * time.Second
	}
	if timeout < 0 {
		return nil, nil, fmt.Errorf("timeout %s is negative", timeout)
	}
	m.RefundNotifyURL = strings.TrimSpace(repl.ReplaceAll(cfg.RefundNotifyURL, ""))
	if m.RefundNotifyURL == "" {
		m.RefundNotifyURL = strings.TrimSuffix(m.NotifyURL, "/") + "/refund"
	} else if err := gateway.CheckNotifyURL("refund_notify_url", m.RefundNotifyURL, m.HTTPNotify); err != nil {
		return nil, nil, err
	}
	var sites []siteUse
	for _, raw := range cfg.PayDirectories {
		dir := strings.TrimSpace(repl.ReplaceAll(raw, ""))
		if err := checkPayDirectory(dir); err != nil {
			return nil, nil, err
		}
		sites = append(sites, siteUse{what: "pay_directory " + dir, url: dir, page: true})
	}
	if wxpay.IsWeChatHost(eu.Hostname()) {
		// WeChat's own: the hosts it calls back, and the payers' pages,
		// must be this Caddy's sites with automatic HTTPS (checked at
		// start). A simulator's merchant is a test's or the demo's.
		sites = append(sites, siteUse{what: "notify_url", url: m.NotifyURL}, siteUse{what: "refund_notify_url", url: m.RefundNotifyURL})
	} else {
		sites = nil
	}

	failover := strings.TrimSpace(repl.ReplaceAll(cfg.FailoverEndpoint, ""))
	switch failover {
	case "":
		failover = wxpay.DefaultFailoverEndpoint(endpoint)
	case "off":
		failover = ""
	default:
		if fu, err := url.Parse(failover); err != nil || fu.Host == "" || (fu.Scheme != "https" && !(fu.Scheme == "http" && gateway.IsLoopback(fu.Hostname()))) {
			return nil, nil, fmt.Errorf("failover_endpoint %q is not an https URL (or http on loopback)", failover)
		}
	}

	var v2 *apiv2.Protocol
	var v2Client *wxpay.Client
	if cfg.APIKey != "" {
		v2Client = &wxpay.Client{
			MchID: m.MchID, Key: key, SignType: st,
			Endpoint: endpoint, HTTPClient: wxpay.NewHTTPClient(256), Timeout: timeout,
			FailoverEndpoint: failover,
			OnFailover: func(op string, err error) {
				logger.Warn("WeChat Pay call failed over to the disaster-recovery endpoint",
					zap.String("merchant", name), zap.String("op", op), zap.String("failover_endpoint", failover), zap.Error(err))
			},
		}
		if cfg.ClientCert != "" {
			cert, err := loadClientCert(cfg.ClientCert, cfg.ClientKey, repl, m.MchID)
			if err != nil {
				return nil, nil, err
			}
			v2Client.TLSHTTPClient = wxpay.NewMTLSHTTPClient(cert, 64)
		} else if cfg.ClientKey != "" {
			return nil, nil, errors.New("client_key without client_cert")
		}
		v2 = apiv2.New(v2Client, opts...)
	}
	rt = &merchantRuntime{merchant: name, sites: sites}
	for _, dir := range cfg.PayDirectories {
		if u, err := url.Parse(strings.TrimSpace(repl.ReplaceAll(dir, ""))); err == nil {
			rt.payHosts = append(rt.payHosts, strings.ToLower(u.Host))
		}
	}
	rt.oauthEndpoint = strings.TrimSuffix(strings.TrimSpace(repl.ReplaceAll(cfg.OAuthEndpoint, "")), "/")
	if rt.oauthEndpoint == "" {
		rt.oauthEndpoint = wxpay.DefaultOAuthEndpoint
	} else if u, err := url.Parse(rt.oauthEndpoint); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && gateway.IsLoopback(u.Hostname()))) {
		return nil, nil, fmt.Errorf("oauth_endpoint %q is not an https URL (or http on loopback)", rt.oauthEndpoint)
	}
	if m.OpenIDs, err = cfg.openIDSource(m, repl); err != nil {
		return nil, nil, err
	}
	if v2Client != nil {
		rt.closers = append(rt.closers, func() {
			v2Client.HTTPClient.CloseIdleConnections()
			if v2Client.TLSHTTPClient != nil {
				v2Client.TLSHTTPClient.CloseIdleConnections()
			}
		})
	}
	if version == "v2" {
		if cfg.hasV3() {
			return nil, nil, errors.New("api_v3_key, private_key, mch_serial, merchant_cert, wechatpay_public_key and platform_certificates are APIv3's: set api_version v3")
		}
		m.API = gateway.ObserveProtocol(v2, name, metricsObserver{})
		return m, rt, nil
	}
	v3, err := cfg.provisionV3(ctx, name, m.MchID, repl, endpoint, failover, timeout, logger, rt)
	if err != nil {
		return nil, nil, err
	}
	m.API = gateway.ObserveProtocol(v3, name, metricsObserver{})
	if v2 != nil {
		// Orders placed under API v2 before the switch still notify
		// in v2.
		m.AlsoNotifiedBy = []gateway.Protocol{gateway.ObserveProtocol(v2, name, metricsObserver{})}
	}
	return m, rt, nil
}

// merchantRuntime is what a provisioned merchant holds that lives with
// the app: background work started with it and stopped with it (the
// platform certificates' refresh), and idle connections to close.
type merchantRuntime struct {
	starters []func()
	stoppers []func()
	closers  []func()
	// lease, set before start when a ledger is open, takes or renews a
	// named lease of the ledger for this gateway (see ledger.TryLease):
	// work that one gateway of several sharing the ledger should do runs
	// where it is held. nil: no ledger, this gateway is alone.
	lease func(ctx context.Context, name string, ttl time.Duration) bool
	// merchant is the merchant's name; sites are the URLs of its that
	// must be this Caddy's sites with automatic HTTPS (checkSites).
	merchant string
	sites    []siteUse
	// payHosts are the hosts of the pay directories (where the web
	// authorisation may send the payer back); oauthEndpoint is WeChat's
	// web authorisation.
	payHosts      []string
	oauthEndpoint string
}

// takeTurn reports whether this gateway holds (or now takes) the lease
// name: always with no ledger; when the ledger cannot be asked, true too
// (doing the work twice is better than not at all).
func (rt *merchantRuntime) takeTurn(ctx context.Context, name string, ttl time.Duration) bool {
	if rt.lease == nil {
		return true
	}
	return rt.lease(ctx, name, ttl)
}

// start starts the merchant's background work.
func (rt *merchantRuntime) start() {
	for _, f := range rt.starters {
		f()
	}
}

// stop stops it and closes idle connections.
func (rt *merchantRuntime) stop() {
	for _, f := range rt.stoppers {
		f()
	}
	for _, f := range rt.closers {
		f()
	}
}

// ResolveAppIDs returns the app ids with their placeholders resolved; a
// placeholder may resolve to several ids: "wx1 wx2" or "wx1,wx2".
func (cfg *Merchant) ResolveAppIDs(repl *caddy.Replacer) []string {
	var ids []string
	for _, raw := range cfg.AppIDs {
		ids = append(ids, strings.FieldsFunc(repl.ReplaceAll(raw, ""), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })...)
	}
	return ids
}

// loadClientCert reads the merchant's client certificate: PEM certificate
// and key (each a file, or the PEM itself from a placeholder, as
// private_key), or one PKCS#12 file whose password is the mch_id. Its
// errors never show a key.
func loadClientCert(certRaw, keyRaw string, repl *caddy.Replacer, mchID string) (tls.Certificate, error) {
	certData, err := PEMOrFile("client_cert", certRaw, repl)
	if err != nil {
		return tls.Certificate{}, err
	}
	if keyRaw == "" {
		cert, err := wxpay.LoadPKCS12(certData, mchID)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("client_cert (PKCS#12, password the mch_id): %w", err)
		}
		return cert, nil
	}
	keyData, err := PEMOrFile("client_key", keyRaw, repl)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := wxpay.LoadClientCertificate(certData, keyData)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("client_cert with client_key: %w", err)
	}
	return cert, nil
}

func emptyFrom(raw string) string {
	if raw == "" {
		return ""
	}
	return fmt.Sprintf(" (%s resolved to nothing)", raw)
}
