package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
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
//   - POST /wxpay/refunds refunds (over mutual TLS with client_cert);
//   - GET /wxpay/refunds/{out_refund_no} asks for a refund's state;
//   - GET /wxpay/bills/{yyyyMMdd} streams the day's bill (CSV; gzip=1);
//   - POST /wxpay/notify and POST /wxpay/notify/refund receive WeChat's
//     payment and refund notifications (no token: verified instead).
//
// All but the notifications need the app's api_token.
//
// Requests outside the base path go to the next handler.
type Handler struct {
	// The merchant (a name from the wxpay app's merchants) this handler
	// serves. Default: "default".
	Merchant string `json:"merchant,omitempty"`

	// The path prefix of the routes. Default: /wxpay.
	BasePath string `json:"base_path,omitempty"`

	// Serve WeChat's notifications only, not the order API: for sites
	// that place orders through wxpay_checkout and need no api_token.
	NotifyOnly bool `json:"notify_only,omitempty"`

	app      *App
	merchant *merchant
	logger   *zap.Logger
	now      func() time.Time
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wxpay",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the merchant in the wxpay app and checks that the routes
// served can be served safely.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.now = time.Now
	if h.Merchant == "" {
		h.Merchant = "default"
	}
	if h.BasePath == "" {
		h.BasePath = "/wxpay"
	}
	if !strings.HasPrefix(h.BasePath, "/") {
		return fmt.Errorf("wxpay handler: base_path %q must start with /", h.BasePath)
	}
	h.BasePath = strings.TrimSuffix(h.BasePath, "/")
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
	if h.app.upstream == nil {
		return errors.New("wxpay handler: receiving notifications needs an upstream in the wxpay global option")
	}
	return nil
}

// ServeHTTP routes the gateway's requests and passes others on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rest, ok := strings.CutPrefix(r.URL.Path, h.BasePath)
	if !ok || (rest != "" && rest[0] != '/') {
		return next.ServeHTTP(w, r)
	}
	route, arg, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	switch {
	case rest == "/notify":
		if h.method(w, r, http.MethodPost) {
			h.serveNotify(w, r)
		}
		return nil
	case rest == "/notify/refund":
		if h.method(w, r, http.MethodPost) {
			h.serveRefundNotify(w, r)
		}
		return nil
	case h.NotifyOnly:
	case route == "orders" || route == "refunds" || route == "bills":
		if !h.app.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wxpay"`)
			writeAPIError(w, &apiError{status: http.StatusUnauthorized, code: "UNAUTHORIZED", message: "missing or wrong API token (Authorization: Bearer <api_token>)"})
			return nil
		}
		no, action, _ := strings.Cut(arg, "/")
		switch {
		case route == "orders" && arg == "":
			if h.method(w, r, http.MethodPost) {
				h.serveCreateOrder(w, r)
			}
			return nil
		case route == "orders" && action == "" && !strings.Contains(arg, "/"):
			if h.method(w, r, http.MethodGet) {
				h.serveQueryOrder(w, r, no)
			}
			return nil
		case route == "orders" && action == "close":
			if h.method(w, r, http.MethodPost) {
				h.serveCloseOrder(w, r, no)
			}
			return nil
		case route == "refunds" && arg == "":
			if h.method(w, r, http.MethodPost) {
				h.serveRefund(w, r)
			}
			return nil
		case route == "refunds" && action == "" && !strings.Contains(arg, "/"):
			if h.method(w, r, http.MethodGet) {
				h.serveQueryRefund(w, r, no)
			}
			return nil
		case route == "bills" && arg != "" && !strings.Contains(arg, "/"):
			if h.method(w, r, http.MethodGet) {
				h.serveBill(w, r, arg)
			}
			return nil
		}
	}
	writeAPIError(w, &apiError{status: http.StatusNotFound, code: "NOT_FOUND", message: "no such route: " + r.Method + " " + r.URL.Path})
	return nil
}

// method answers 405 unless r uses want.
func (h *Handler) method(w http.ResponseWriter, r *http.Request, want string) bool {
	if r.Method == want {
		return true
	}
	w.Header().Set("Allow", want)
	writeAPIError(w, &apiError{status: http.StatusMethodNotAllowed, code: "METHOD_NOT_ALLOWED", message: "use " + want})
	return false
}

func (h *Handler) serveCreateOrder(w http.ResponseWriter, r *http.Request) {
	body, aerr := readLimited(w, r, maxOrderBody)
	if aerr == nil {
		var o *OrderRequest
		if o, aerr = decodeOrder(body); aerr == nil {
			var resp *OrderResponse
			if resp, aerr = h.createOrder(r, o); aerr == nil {
				writeJSON(w, http.StatusOK, resp)
				return
			}
		}
	}
	h.logOrderError(r, aerr)
	writeAPIError(w, aerr)
}

// createOrder validates and places one order.
func (h *Handler) createOrder(r *http.Request, o *OrderRequest) (*OrderResponse, *apiError) {
	req, aerr := o.unifiedOrderRequest(h.merchant, clientIP(r))
	if aerr != nil {
		return nil, aerr
	}
	return h.app.placeOrder(r.Context(), h.merchant, req, h.now())
}

func (h *Handler) logOrderError(r *http.Request, aerr *apiError) {
	fields := []zap.Field{
		zap.String("merchant", h.Merchant), zap.Int("status", aerr.status),
		zap.String("code", aerr.code), zap.String("message", aerr.message),
	}
	if aerr.err != nil {
		fields = append(fields, zap.Error(aerr.err))
	}
	if aerr.status >= 500 {
		h.logger.Error("order not placed", fields...)
	} else {
		h.logger.Info("order refused", fields...)
	}
}

// serveNotify handles one payment notification: read at most 64 KiB,
// verify, check the merchant, deliver upstream, and only then tell WeChat
// SUCCESS. Every failure answers FAIL so that WeChat sends it again.
func (h *Handler) serveNotify(w http.ResponseWriter, r *http.Request) {
	body, aerr := readLimited(w, r, wxpay.MaxNotificationSize)
	if aerr != nil {
		h.notifyFail(w, r, aerr.status, aerr.message, nil)
		return
	}
	n, err := wxpay.VerifyNotification(body, h.merchant.key)
	if err != nil {
		h.notifyFail(w, r, http.StatusBadRequest, "invalid notification", err)
		return
	}
	if n.MchID() != h.merchant.mchID {
		h.notifyFail(w, r, http.StatusBadRequest, "mch_id mismatch", fmt.Errorf("notification for mch_id %q reached merchant %s (%s)", n.MchID(), h.Merchant, h.merchant.mchID))
		return
	}
	if !h.merchant.hasAppID(n.AppID()) {
		h.notifyFail(w, r, http.StatusBadRequest, "appid mismatch", fmt.Errorf("notification for appid %q is not one of merchant %s's", n.AppID(), h.Merchant))
		return
	}
	now := h.now()
	if h.app.Ack == "upstream" {
		h.deliverBeforeAck(w, r, n, now)
		return
	}
	ev, created, err := h.app.recordNotification(r.Context(), h.merchant, n, now)
	if err != nil {
		h.notifyFail(w, r, http.StatusServiceUnavailable, "storage failure", err)
		return
	}
	if created {
		h.logger.Info("notification stored", zap.String("merchant", h.Merchant), zap.String("event_id", ev.ID),
			zap.String("type", ev.Type), zap.String("out_trade_no", n.OutTradeNo()), zap.String("transaction_id", n.TransactionID()))
	} else {
		h.logger.Info("duplicate notification acknowledged", zap.String("merchant", h.Merchant), zap.String("event_id", ev.ID))
	}
	writeNotifyReply(w, http.StatusOK, []byte(wxpay.NotifyReplySuccess))
}

// deliverBeforeAck is `ack upstream`: the event goes to the backend while
// WeChat waits, and WeChat hears SUCCESS only once the backend took it.
func (h *Handler) deliverBeforeAck(w http.ResponseWriter, r *http.Request, n *wxpay.Notification, now time.Time) {
	ev, err := event.FromNotification(n, now)
	if err != nil {
		h.notifyFail(w, r, http.StatusBadRequest, "invalid notification", err)
		return
	}
	payload, err := ev.Marshal()
	if err != nil {
		h.notifyFail(w, r, http.StatusInternalServerError, "internal error", err)
		return
	}
	if err := h.app.upstream.deliver(r.Context(), ev.ID, payload, now); err != nil {
		h.notifyFail(w, r, http.StatusServiceUnavailable, "backend did not take the event", err)
		return
	}
	h.logger.Info("notification delivered",
		zap.String("merchant", h.Merchant), zap.String("event_id", ev.ID), zap.String("type", ev.Type),
		zap.String("out_trade_no", n.OutTradeNo()), zap.String("transaction_id", n.TransactionID()))
	writeNotifyReply(w, http.StatusOK, []byte(wxpay.NotifyReplySuccess))
}

func (h *Handler) notifyFail(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	fields := []zap.Field{zap.String("merchant", h.Merchant), zap.String("remote_ip", clientIP(r)), zap.String("reason", reason)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	h.logger.Warn("notification refused; WeChat will retry", fields...)
	writeNotifyReply(w, status, wxpay.NotifyReplyFail(reason))
}

func writeNotifyReply(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
