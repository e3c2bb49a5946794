package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Handler serves the gateway's routes for one merchant under a base path
// (default /wxpay):
//
//   - POST /wxpay/orders places an order with WeChat Pay and answers the
//     client pay parameters;
//   - GET /wxpay/orders/{out_trade_no} asks WeChat for its state (and
//     records a payment whose notification never came);
//   - POST /wxpay/orders/{out_trade_no}/close closes it;
//   - GET /wxpay/orders/{out_trade_no}/qrcode.png draws a NATIVE order's
//     code_url as a QR code;
//   - POST /wxpay/refunds refunds (API v2: over mutual TLS with
//     client_cert);
//   - GET /wxpay/refunds/{out_refund_no} asks for a refund's state;
//   - GET /wxpay/bills/{yyyyMMdd} streams the day's bill (CSV; gzip=1);
//   - POST /wxpay/notify and POST /wxpay/notify/refund receive WeChat's
//     payment and refund notifications (no token: verified instead);
//   - GET /wxpay/openid/miniprogram exchanges a mini program's login code
//     for the payer's openid, and GET /wxpay/oauth/start and
//     /wxpay/oauth/callback run an official account's web authorisation
//     for it (no token: the payer's browser or mini program calls them).
//
// All but the notifications, the openid and the oauth routes need the
// app's api_token. Other requests under the base path are answered 404
// (405 for a known route with another method); requests outside it go to
// the next handler.
type Handler struct {
	// The merchant (a name from the wxpay app's merchants) this handler
	// serves. Default: "default".
	Merchant string `json:"merchant,omitempty"`

	// The path prefix of the routes. Default: /wxpay.
	BasePath string `json:"base_path,omitempty"`

	// Serve WeChat's notifications only, not the order API: for sites
	// that place orders through wxpay_checkout and need no api_token.
	NotifyOnly bool `json:"notify_only,omitempty"`

	// WeChat's domain-verification file for this site (MP_verify_….txt,
	// from 公众号设置 → 功能设置, for the JS-API and web-authorisation
	// domains of an official account): served at /MP_verify_….txt, at the
	// site's root, whatever base_path is.
	MPVerify string `json:"mp_verify,omitempty"`

	mpVerify *mpVerifyFile
	app      *App
	merchant *gateway.Merchant
	logger   *zap.Logger
	routes   *http.ServeMux
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wxpay",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the merchant in the wxpay app, checks that the routes
// can be served safely, and sets them up.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Merchant == "" {
		h.Merchant = "default"
	}
	if h.BasePath == "" {
		h.BasePath = "/wxpay"
	}
	if !strings.HasPrefix(h.BasePath, "/") || strings.ContainsAny(h.BasePath, "{} \t") {
		return fmt.Errorf("wxpay handler: base_path %q must be a path starting with /", h.BasePath)
	}
	h.BasePath = strings.TrimRight(h.BasePath, "/")
	if h.BasePath == "" {
		return errors.New("wxpay handler: base_path / would take every path of the site: give the gateway a path of its own (the default is /wxpay)")
	}
	app, err := ctx.App("wxpay")
	if err != nil {
		return fmt.Errorf("wxpay handler: %w", err)
	}
	h.app = app.(*App)
	if h.merchant, err = h.app.merchantNamed(h.Merchant); err != nil {
		return fmt.Errorf("wxpay handler: %w", err)
	}
	if !h.NotifyOnly && !h.app.hasToken {
		return errors.New("wxpay handler: serving the order API needs api_token in the wxpay global option (or set notify_only)")
	}
	if h.app.webhook == nil {
		return errors.New("wxpay handler: receiving notifications needs an upstream in the wxpay global option")
	}
	if h.MPVerify != "" {
		if h.mpVerify, err = loadMPVerify(h.MPVerify); err != nil {
			return fmt.Errorf("wxpay handler: %w", err)
		}
	}
	h.routes = h.newRoutes()
	return nil
}

// newRoutes lays out the routes under the base path. A known path with
// another method is answered 405 (a path pattern without a method is less
// specific than the same path with one), and the rest of the base path
// 404; the API's paths ask for the token before anything else.
func (h *Handler) newRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	b := h.BasePath
	route := func(method, path string, api bool, serve http.HandlerFunc) {
		notAllowed := h.methodNotAllowed(method, api)
		exact := func(w http.ResponseWriter, r *http.Request) {
			if r.Method != method { // a GET pattern also matches HEAD
				notAllowed.ServeHTTP(w, r)
				return
			}
			serve(w, r)
		}
		if api {
			exact = h.withToken(exact)
		}
		mux.Handle(method+" "+b+path, http.HandlerFunc(exact))
		mux.Handle(b+path, notAllowed)
	}
	route(http.MethodPost, "/notify", false, h.serveNotify)
	route(http.MethodPost, "/notify/refund", false, h.serveRefundNotify)
	notFound := http.HandlerFunc(h.serveNotFound)
	mux.Handle(b+"/", notFound)
	mux.Handle(b, notFound)
	if h.NotifyOnly {
		return mux
	}
	route(http.MethodPost, "/orders", true, h.serveJSON(h.createOrder))
	route(http.MethodGet, "/orders/{out_trade_no}", true, h.serveJSON(h.queryOrder))
	route(http.MethodPost, "/orders/{out_trade_no}/close", true, h.serveJSON(h.closeOrder))
	route(http.MethodGet, "/orders/{out_trade_no}/qrcode.png", true, h.serveQRCode)
	route(http.MethodGet, "/openid/miniprogram", false, h.serveJSON(h.serveMiniProgramOpenID))
	route(http.MethodGet, "/oauth/start", false, h.serveOAuthStart)
	route(http.MethodGet, "/oauth/callback", false, h.serveOAuthCallback)
	route(http.MethodPost, "/refunds", true, h.serveJSON(h.refund))
	route(http.MethodGet, "/refunds/{out_refund_no}", true, h.serveJSON(h.queryRefund))
	route(http.MethodGet, "/bills/{date}", true, h.serveBill)
	for _, p := range []string{"/orders/", "/refunds/", "/bills/"} {
		mux.Handle(b+p, h.withToken(notFound))
	}
	return mux
}

// ServeHTTP serves the routes under the base path and passes other
// requests on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.mpVerify.serve(w, r) {
		return nil
	}
	rest, ok := strings.CutPrefix(r.URL.Path, h.BasePath)
	if !ok || (rest != "" && rest[0] != '/') {
		return next.ServeHTTP(w, r)
	}
	if !h.app.enter() { // the app's Stop lets it finish
		if strings.HasPrefix(rest, "/notify") {
			writeReply(w, h.merchant.NotifyReply(r.Header, nil, http.StatusServiceUnavailable, "stopping"))
		} else {
			writeError(w, errStopping)
		}
		return nil
	}
	defer h.app.leave()
	h.routes.ServeHTTP(w, r)
	return nil
}

// withToken answers 401 unless the request carries the API token.
func (h *Handler) withToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.app.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wxpay"`)
			writeError(w, &gateway.Error{Status: http.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "missing or wrong API token (Authorization: Bearer <api_token>)"})
			return
		}
		next(w, r)
	}
}

// methodNotAllowed answers 405 naming the method the path takes.
func (h *Handler) methodNotAllowed(allow string, api bool) http.Handler {
	serve := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, &gateway.Error{Status: http.StatusMethodNotAllowed, Code: "METHOD_NOT_ALLOWED", Message: "use " + allow})
	}
	if api {
		return h.withToken(serve)
	}
	return http.HandlerFunc(serve)
}

func (h *Handler) serveNotFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, &gateway.Error{Status: http.StatusNotFound, Code: "NOT_FOUND", Message: "no such route: " + r.Method + " " + r.URL.Path})
}

// fail logs and answers a request the gateway could not serve.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	if l, ok := err.(alreadyLogged); ok {
		writeError(w, gateway.ErrorFor(l.error))
		return
	}
	e := gateway.ErrorFor(err)
	logError(h.logger, h.Merchant, e)
	writeError(w, e)
}

// alreadyLogged is an error whose request the service has logged: fail
// answers it without a second entry.
type alreadyLogged struct{ error }

// logError logs a refused or failed request (with what names it, ids):
// at error level when it is the gateway's or WeChat's failure (5xx), at
// warn level when WeChat refused what it was asked (502), at info level
// when the caller's.
func logError(logger *zap.Logger, merchant string, e *gateway.Error, ids ...zap.Field) {
	fields := append([]zap.Field{
		zap.String("merchant", merchant), zap.Int("status", e.Status),
		zap.String("code", e.Code), zap.String("message", gateway.LogText(e.Message)),
	}, ids...)
	if e.Err != nil {
		fields = append(fields, gateway.LogError(e.Err))
	}
	msg := "request failed"
	if e.Status < 500 || e.Status == gateway.StatusClientClosed {
		msg = "request refused"
	}
	logger.Log(gateway.LogLevel(e), msg, fields...)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
