package caddymodule

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(Checkout))
}

// OrderMediaType is the Content-Type with which a backend behind
// wxpay_checkout asks the gateway to place an order.
const OrderMediaType = "application/vnd.wxpay.order+json"

// Checkout lets an existing route keep deciding the order. The request goes
// on to the next handler (usually reverse_proxy to the backend). When the
// backend answers 200 with Content-Type application/vnd.wxpay.order+json
// and an order (the schema of POST /wxpay/orders), the gateway places that
// order with WeChat Pay and answers the client with the pay parameters
// instead. Any other answer passes through untouched. The amount always
// comes from the backend, never from the client.
type Checkout struct {
	// The merchant (a name from the wxpay app's merchants) orders are
	// placed for. Default: "default".
	Merchant string `json:"merchant,omitempty"`

	app      *App
	merchant *merchant
	logger   *zap.Logger
	now      func() time.Time
}

// CaddyModule returns the Caddy module information.
func (*Checkout) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.wxpay_checkout",
		New: func() caddy.Module { return new(Checkout) },
	}
}

// Provision finds the merchant in the wxpay app.
func (c *Checkout) Provision(ctx caddy.Context) error {
	c.logger = ctx.Logger()
	c.now = time.Now
	if c.Merchant == "" {
		c.Merchant = "default"
	}
	app, err := ctx.App("wxpay")
	if err != nil {
		return fmt.Errorf("wxpay_checkout: %w", err)
	}
	c.app = app.(*App)
	if c.merchant, err = c.app.merchantNamed(c.Merchant); err != nil {
		return fmt.Errorf("wxpay_checkout: %w", err)
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// isOrderAnswer reports whether the backend's answer is an order to place.
func isOrderAnswer(status int, h http.Header) bool {
	if status != http.StatusOK {
		return false
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == OrderMediaType
}

// ServeHTTP passes the request on and places the order the backend answers.
func (c *Checkout) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	rec := caddyhttp.NewResponseRecorder(w, buf, isOrderAnswer)
	if err := next.ServeHTTP(rec, r); err != nil {
		return err
	}
	if !rec.Buffered() {
		return nil
	}
	if rec.Status() == 0 {
		// Nothing was written downstream.
		return rec.WriteResponse()
	}
	// The backend's order answer is consumed here: none of its
	// entity headers describe what the client receives.
	hdr := w.Header()
	encoding := hdr.Get("Content-Encoding")
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Etag", "Last-Modified", "Content-Range", "Accept-Ranges"} {
		hdr.Del(k)
	}
	body, aerr := c.orderBody(buf, encoding)
	if aerr == nil {
		var o *OrderRequest
		if o, aerr = decodeOrder(body); aerr == nil {
			aerr = c.place(w, r, o)
			if aerr == nil {
				return nil
			}
		} else {
			// A malformed order is the backend's bug, not the client's.
			aerr = &apiError{status: http.StatusBadGateway, code: "BACKEND_INVALID_ORDER", message: "the backend's order is invalid: " + aerr.message}
		}
	}
	c.logger.Error("checkout order not placed", zap.String("merchant", c.Merchant),
		zap.Int("status", aerr.status), zap.String("code", aerr.code), zap.String("message", aerr.message), zap.NamedError("cause", aerr.err))
	writeAPIError(w, aerr)
	return nil
}

func (c *Checkout) orderBody(buf *bytes.Buffer, encoding string) ([]byte, *apiError) {
	var rd io.Reader = buf
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(buf)
		if err != nil {
			return nil, &apiError{status: http.StatusBadGateway, code: "BACKEND_INVALID_ORDER", message: "the backend's gzip order does not decompress"}
		}
		rd = zr
	default:
		return nil, &apiError{status: http.StatusBadGateway, code: "BACKEND_INVALID_ORDER", message: "the backend's order uses Content-Encoding " + encoding + "; answer it uncompressed or gzip"}
	}
	body, err := io.ReadAll(io.LimitReader(rd, maxOrderBody+1))
	if err != nil {
		return nil, &apiError{status: http.StatusBadGateway, code: "BACKEND_INVALID_ORDER", message: "the backend's order cannot be read"}
	}
	if len(body) > maxOrderBody {
		return nil, &apiError{status: http.StatusBadGateway, code: "BACKEND_INVALID_ORDER", message: fmt.Sprintf("the backend's order is larger than %d bytes", maxOrderBody)}
	}
	return body, nil
}

func (c *Checkout) place(w http.ResponseWriter, r *http.Request, o *OrderRequest) *apiError {
	req, aerr := o.unifiedOrderRequest(c.merchant, clientIP(r))
	if aerr != nil {
		if aerr.status == http.StatusBadRequest {
			return &apiError{status: http.StatusBadGateway, code: "BACKEND_INVALID_ORDER", message: "the backend's order is invalid: " + aerr.message}
		}
		return aerr
	}
	resp, aerr := c.app.placeOrder(r.Context(), c.merchant, req, c.now())
	if aerr != nil {
		return aerr
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Checkout)(nil)
	_ caddyhttp.MiddlewareHandler = (*Checkout)(nil)
)
