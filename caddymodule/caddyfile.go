package caddymodule

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("wxpay", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("wxpay", parseHandler)
	httpcaddyfile.RegisterHandlerDirective("wxpay_checkout", parseCheckout)
	// Early in the route: each of these handlers passes on what it does
	// not serve, and ordering them before a site's respond, reverse_proxy
	// or catch-all handle block keeps those from shadowing the gateway's
	// routes. wxpay goes before try_files too (after rewrite and uri, which
	// a site may use to map its own paths onto the gateway's): a
	// single-page app's "try_files {path} /index.html" would otherwise
	// rewrite WeChat's notifications to the app's page, and a site-wide
	// basic_auth or forward_auth would refuse WeChat, which cannot log in
	// (the order routes have their api_token). wxpay_checkout must wrap
	// the reverse_proxy whose answer it reads: before invoke, handle and
	// route.
	httpcaddyfile.RegisterDirectiveOrder("wxpay", httpcaddyfile.Before, "try_files")
	httpcaddyfile.RegisterDirectiveOrder("wxpay_checkout", httpcaddyfile.Before, "invoke")
}

// parseGlobalOption parses the wxpay global option; see
// App.UnmarshalCaddyfile.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		if prev, ok := existing.(httpcaddyfile.App); ok {
			if err := json.Unmarshal(prev.Value, app); err != nil {
				return nil, err
			}
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "wxpay", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from the wxpay global option:
//
//	wxpay {
//		merchant [<name>] {
//			mch_id      <mch_id>
//			app_id      <app_id> [<app_id>...]
//			api_key     <key>
//			sign_type   MD5|HMAC-SHA256
//			notify_sign_type HMAC-SHA256|any
//			notify_url  <url>
//			insecure_notify_url
//			endpoint    <url>
//			timeout     <duration>
//			client_cert <cert.pem> <key.pem> | <apiclient_cert.p12>
//			refund_notify_url <url>
//			app_secret  <app_id> <secret>
//			sns_endpoint <url>
//			oauth_endpoint <url>
//			pay_directory <https://host/dir/>...
//			failover_endpoint <url>|off
//			api_version v2|v3
//			api_v3_key  <key>
//			private_key <apiclient_key.pem>
//			mch_serial  <serial>
//			merchant_cert <apiclient_cert.pem>
//			wechatpay_public_key <PUB_KEY_ID_…> <pub_key.pem>
//			platform_certificates auto|off
//		}
//		upstream <url> {
//			secret             <secret>
//			timeout            <duration>
//			retry_max_age      <duration>
//			retry_max_interval <duration>
//			concurrency        <n>
//		}
//		api_token <token>
//		storage sqlite [<path>]
//		storage postgres <dsn> {
//			max_conns       <n>
//			connect_timeout <duration>
//			query_timeout   <duration>
//		}
//		ack stored|upstream
//		reconcile off | reconcile {
//			delay         <duration>
//			close_expired on|off
//		}
//	}
//
// Each option sets the field of the same name (app_id, which may be
// repeated, sets app_ids; client_cert's second argument, client_key;
// wechatpay_public_key's two, wechatpay_public_key_id and
// wechatpay_public_key).
// merchant may be repeated with different names; a merchant without a
// name is "default". Secrets (api_key, secret, api_token) are best given
// as {env.*} or {file.*} placeholders, resolved when the config loads.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "merchant":
			name := "default"
			if d.NextArg() {
				name = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if a.Merchants == nil {
				a.Merchants = map[string]*Merchant{}
			}
			if _, dup := a.Merchants[name]; dup {
				return d.Errf("merchant %q is defined twice", name)
			}
			m := new(Merchant)
			if err := m.unmarshalCaddyfile(d); err != nil {
				return err
			}
			a.Merchants[name] = m
		case "upstream":
			if a.Upstream != nil {
				return d.Err("upstream is defined twice")
			}
			u := new(Upstream)
			if !d.NextArg() {
				return d.Err("upstream needs a URL: upstream <url> { secret <secret> }")
			}
			u.URL = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "secret":
					if err := secretArg(d, &u.Secret); err != nil {
						return err
					}
				case "timeout":
					dur, err := parseDuration(d)
					if err != nil {
						return err
					}
					u.Timeout = dur
				case "retry_max_age":
					dur, err := parseDuration(d)
					if err != nil {
						return err
					}
					u.RetryMaxAge = dur
				case "retry_max_interval":
					dur, err := parseDuration(d)
					if err != nil {
						return err
					}
					u.RetryMaxInterval = dur
				case "concurrency":
					var v string
					if !d.AllArgs(&v) {
						return d.ArgErr()
					}
					n, err := strconv.Atoi(v)
					if err != nil || n < 1 {
						return d.Errf("concurrency must be a positive integer, got %q", v)
					}
					u.Concurrency = n
				default:
					return d.Errf("unknown upstream option %q", d.Val())
				}
			}
			a.Upstream = u
		case "api_token":
			if err := secretArg(d, &a.APIToken); err != nil {
				return err
			}
		case "storage":
			if !d.NextArg() {
				return d.Err("storage needs a driver: storage sqlite [<path>] | storage postgres <dsn>")
			}
			st := &Storage{Driver: d.Val()}
			switch st.Driver {
			case "sqlite":
				if d.NextArg() {
					st.Path = d.Val()
				}
			case "postgres":
				if !d.NextArg() {
					return d.Err("storage postgres needs a connection string: storage postgres {env.WXPAY_DATABASE_URL}")
				}
				st.DSN = d.Val()
			default:
				return d.Errf("storage driver %q is not supported (sqlite, postgres)", st.Driver)
			}
			if d.NextArg() {
				if st.Driver == "postgres" {
					// Never echo the arguments: they may hold a password.
					return d.Err("storage postgres takes one connection string: quote a key=value one (storage postgres \"host=… dbname=…\"), or give it as {env.WXPAY_DATABASE_URL}")
				}
				return d.ArgErr()
			}
			for d.NextBlock(1) {
				if st.Driver != "postgres" {
					return d.Errf("storage %s takes no block", st.Driver)
				}
				switch d.Val() {
				case "max_conns":
					if !d.NextArg() {
						return d.ArgErr()
					}
					n, err := strconv.Atoi(d.Val())
					if err != nil || n < 1 {
						return d.Errf("max_conns %q: want a positive number", d.Val())
					}
					st.MaxConns = n
					if d.NextArg() {
						return d.ArgErr()
					}
				case "connect_timeout", "query_timeout":
					opt := d.Val()
					dur, err := parseDuration(d)
					if err != nil {
						return err
					}
					if opt == "connect_timeout" {
						st.ConnectTimeout = dur
					} else {
						st.QueryTimeout = dur
					}
				default:
					return d.Errf("unknown storage postgres option %q (max_conns, connect_timeout, query_timeout)", d.Val())
				}
			}
			a.Storage = st
		case "reconcile":
			rc := new(Reconcile)
			if d.NextArg() {
				if d.Val() != "off" {
					return d.Errf("reconcile takes off or a block, got %q", d.Val())
				}
				rc.Disabled = true
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "delay":
					dur, err := parseDuration(d)
					if err != nil {
						return err
					}
					rc.Delay = dur
				case "close_expired":
					var v string
					if !d.AllArgs(&v) || (v != "on" && v != "off") {
						return d.Err("close_expired on|off")
					}
					rc.CloseExpired = v == "on"
				default:
					return d.Errf("unknown reconcile option %q", d.Val())
				}
			}
			a.Reconcile = rc
		case "ack":
			if !d.AllArgs(&a.Ack) {
				return d.ArgErr()
			}
			if a.Ack != "stored" && a.Ack != "upstream" {
				return d.Errf("ack must be stored or upstream, got %q", a.Ack)
			}
		default:
			return d.Errf("unknown wxpay option %q", d.Val())
		}
	}
	return nil
}

func (m *Merchant) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.NextBlock(1) {
		switch opt := d.Val(); opt {
		case "mch_id":
			if !d.AllArgs(&m.MchID) {
				return d.ArgErr()
			}
		case "app_ids":
			return d.Errf("unknown merchant option %q: use app_id <app_id> [<app_id>...]", opt)
		case "app_id":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			m.AppIDs = append(m.AppIDs, args...)
		case "api_key":
			if err := secretArg(d, &m.APIKey); err != nil {
				return err
			}
		case "sign_type":
			if !d.AllArgs(&m.SignType) {
				return d.ArgErr()
			}
		case "notify_sign_type":
			if !d.AllArgs(&m.NotifySignType) {
				return d.ArgErr()
			}
		case "notify_url":
			if !d.AllArgs(&m.NotifyURL) {
				return d.ArgErr()
			}
		case "insecure_notify_url":
			if d.NextArg() {
				return d.ArgErr()
			}
			m.InsecureNotifyURL = true
		case "endpoint":
			if !d.AllArgs(&m.Endpoint) {
				return d.ArgErr()
			}
		case "timeout":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			m.Timeout = dur
		case "client_cert":
			args := d.RemainingArgs()
			switch len(args) {
			case 1:
				m.ClientCert = args[0]
			case 2:
				m.ClientCert, m.ClientKey = args[0], args[1]
			default:
				return d.Err("client_cert <cert.pem> <key.pem> | client_cert <apiclient_cert.p12>")
			}
		case "refund_notify_url":
			if !d.AllArgs(&m.RefundNotifyURL) {
				return d.ArgErr()
			}
		case "app_secret":
			var appID, secret string
			if !d.AllArgs(&appID, &secret) {
				return d.Err("app_secret needs an app id and its secret: app_secret <app_id> {env.WXPAY_APP_SECRET}")
			}
			if m.AppSecrets == nil {
				m.AppSecrets = map[string]string{}
			}
			m.AppSecrets[appID] = secret
		case "sns_endpoint":
			if !d.AllArgs(&m.SNSEndpoint) {
				return d.ArgErr()
			}
		case "oauth_endpoint":
			if !d.AllArgs(&m.OAuthEndpoint) {
				return d.ArgErr()
			}
		case "pay_directory":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("pay_directory needs the URL of a directory: pay_directory https://shop.example.com/pay/")
			}
			m.PayDirectories = append(m.PayDirectories, args...)
		case "failover_endpoint":
			if !d.AllArgs(&m.FailoverEndpoint) {
				return d.ArgErr()
			}
		case "api_version":
			if !d.AllArgs(&m.APIVersion) {
				return d.ArgErr()
			}
		case "api_v3_key":
			if err := secretArg(d, &m.APIv3Key); err != nil {
				return err
			}
		case "private_key":
			if err := secretArg(d, &m.PrivateKey); err != nil {
				return err
			}
		case "mch_serial":
			if !d.AllArgs(&m.MchSerial) {
				return d.ArgErr()
			}
		case "merchant_cert":
			if !d.AllArgs(&m.MerchantCert) {
				return d.ArgErr()
			}
		case "wechatpay_public_key":
			if !d.AllArgs(&m.WechatpayPublicKeyID, &m.WechatpayPublicKey) {
				return d.Err("wechatpay_public_key <PUB_KEY_ID_…> <pub_key.pem>")
			}
		case "platform_certificates":
			if !d.AllArgs(&m.PlatformCertificates) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unknown merchant option %q", opt)
		}
	}
	return nil
}

func parseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, d.Errf("bad duration %q: %v", s, err)
	}
	return caddy.Duration(dur), nil
}

// parseHandler parses the wxpay directive; see Handler.UnmarshalCaddyfile.
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	return handler, handler.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from the wxpay directive:
//
//	wxpay [<merchant>] {
//		base_path <path>
//		notify_only
//		mp_verify <MP_verify_….txt>
//	}
//
// The argument names the merchant (default "default"); base_path,
// notify_only and mp_verify set the fields of the same name.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		h.Merchant = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "base_path":
			if !d.AllArgs(&h.BasePath) {
				return d.ArgErr()
			}
		case "notify_only":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.NotifyOnly = true
		case "mp_verify":
			if !d.AllArgs(&h.MPVerify) {
				return d.Err("mp_verify needs the path of WeChat's MP_verify_….txt file")
			}
		default:
			return d.Errf("unknown wxpay option %q", d.Val())
		}
	}
	return nil
}

// parseCheckout parses the wxpay_checkout directive; see
// Checkout.UnmarshalCaddyfile.
func parseCheckout(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Checkout)
	return c, c.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from the wxpay_checkout
// directive:
//
//	wxpay_checkout [<merchant>]
//
// The argument names the merchant (default "default"); it takes no block.
func (c *Checkout) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		c.Merchant = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("wxpay_checkout takes no options, got %q", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Checkout)(nil)
)

// secretArg sets *dst to the directive's one argument, a secret or where
// to find one: its errors never echo an argument (Caddyfile's ArgErr
// quotes the token it stopped at, which would be the secret).
func secretArg(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if !d.NextArg() {
		return d.Errf("%s needs a value", name)
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.Errf("%s takes one value (the arguments are not shown: they may hold a secret; quote a value with spaces)", name)
	}
	return nil
}
