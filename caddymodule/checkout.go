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

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
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
	merchant *gateway.Merchant
	logger   *zap.Logger
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

// errOrderTooLarge stops the copy of a backend's order answer larger than
// the gateway reads.
var errOrderTooLarge = fmt.Errorf("the backend's order is larger than %d bytes", gateway.MaxBodySize)

// orderRecorder passes a response through, except an order answer
// (isOrderAnswer), which it keeps: at most gateway.MaxBodySize bytes of
// it. A write past that fails, so that the handler writing it (usually
// reverse_proxy) stops reading the backend there.
type orderRecorder struct {
	*caddyhttp.ResponseWriterWrapper
	buf         *bytes.Buffer
	wroteHeader bool
	order       bool // the answer is an order, kept in buf
	tooLarge    bool
}

func (rec *orderRecorder) WriteHeader(status int) {
	if rec.wroteHeader {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		// Informational: not the answer.
		rec.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	rec.wroteHeader = true
	if rec.order = isOrderAnswer(status, rec.Header()); !rec.order {
		rec.ResponseWriterWrapper.WriteHeader(status)
	}
}

func (rec *orderRecorder) Write(p []byte) (int, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	if !rec.order {
		return rec.ResponseWriterWrapper.Write(p)
	}
	if rec.buf.Len()+len(p) > gateway.MaxBodySize {
		rec.tooLarge = true
		return 0, errOrderTooLarge
	}
	return rec.buf.Write(p)
}

// ReadFrom copies through Write while the answer is kept (the wrapped
// writer's ReadFrom would pass it to the client).
func (rec *orderRecorder) ReadFrom(r io.Reader) (int64, error) {
	if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	if !rec.order {
		return rec.ResponseWriterWrapper.ReadFrom(r)
	}
	return io.Copy(writerOnly{rec}, r)
}

// Flush flushes what passes through; a kept answer has nothing to flush.
func (rec *orderRecorder) Flush() {
	if !rec.order {
		_ = http.NewResponseController(rec.ResponseWriterWrapper).Flush()
	}
}

// writerOnly hides a writer's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// ServeHTTP passes the request on and places the order the backend answers.
func (c *Checkout) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 2*gateway.MaxBodySize {
			bufPool.Put(buf)
		}
	}()
	rec := &orderRecorder{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, buf: buf}
	if err := c.serveNext(rec, r, next); err != nil && !rec.tooLarge {
		return err
	}
	if !rec.order {
		return nil
	}
	// The backend's order answer is consumed here: none of its
	// entity headers describe what the client receives.
	hdr := w.Header()
	encoding := hdr.Get("Content-Encoding")
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Etag", "Last-Modified", "Content-Range", "Accept-Ranges"} {
		hdr.Del(k)
	}
	if rec.tooLarge {
		err = &gateway.Error{Status: http.StatusBadGateway, Code: "BACKEND_INVALID_ORDER", Message: errOrderTooLarge.Error()}
	} else {
		err = c.place(w, r, buf, encoding)
	}
	if err != nil {
		e := gateway.ErrorFor(err)
		logError(c.logger, c.Merchant, e)
		writeError(w, e)
	}
	return nil
}

// serveNext runs the next handler. When it stops because the order answer
// it wrote is too large, reverse_proxy aborts the exchange with
// http.ErrAbortHandler (it cannot know that nothing reached the client):
// that abort is recovered here, and the client is answered.
func (c *Checkout) serveNext(rec *orderRecorder, r *http.Request, next caddyhttp.Handler) (err error) {
	defer func() {
		if rec.tooLarge {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			}
		}
	}()
	return next.ServeHTTP(rec, r)
}

// place places the backend's order and answers the client; a malformed
// or invalid order is the backend's bug, not the client's (502).
func (c *Checkout) place(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, encoding string) error {
	if !c.app.enter() { // the app's Stop lets it finish
		return errStopping
	}
	defer c.app.leave()
	svc, err := c.app.serviceFor(r.Context())
	if err != nil {
		return err
	}
	body, err := c.orderBody(buf, encoding)
	if err != nil {
		return err
	}
	req, err := gateway.DecodeOrderRequest(body)
	if err != nil {
		return backendInvalid(err)
	}
	resp, err := svc.PlaceOrder(r.Context(), c.merchant, req, clientIP(r))
	if err != nil {
		return backendInvalid(err)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// backendInvalid makes a 400 (the order is invalid) the backend's 502.
func backendInvalid(err error) error {
	if e := gateway.ErrorFor(err); e.Status == http.StatusBadRequest {
		return &gateway.Error{Status: http.StatusBadGateway, Code: "BACKEND_INVALID_ORDER", Message: "the backend's order is invalid: " + e.Message}
	}
	return err
}

func (c *Checkout) orderBody(buf *bytes.Buffer, encoding string) ([]byte, error) {
	var rd io.Reader = buf
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(buf)
		if err != nil {
			return nil, &gateway.Error{Status: http.StatusBadGateway, Code: "BACKEND_INVALID_ORDER", Message: "the backend's gzip order does not decompress"}
		}
		rd = zr
	default:
		return nil, &gateway.Error{Status: http.StatusBadGateway, Code: "BACKEND_INVALID_ORDER", Message: "the backend's order uses Content-Encoding " + encoding + "; answer it uncompressed or gzip"}
	}
	body, err := io.ReadAll(io.LimitReader(rd, gateway.MaxBodySize+1))
	if err != nil {
		return nil, &gateway.Error{Status: http.StatusBadGateway, Code: "BACKEND_INVALID_ORDER", Message: "the backend's order cannot be read"}
	}
	if len(body) > gateway.MaxBodySize {
		return nil, &gateway.Error{Status: http.StatusBadGateway, Code: "BACKEND_INVALID_ORDER", Message: fmt.Sprintf("the backend's order is larger than %d bytes", gateway.MaxBodySize)}
	}
	return body, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Checkout)(nil)
	_ caddyhttp.MiddlewareHandler = (*Checkout)(nil)
)
