package delivery

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/event"
)

// Webhook sends events to the backend's URL as signed JSON (event.SetHeaders):
// the outbox worker's Sender, and the gateway's way of delivering an event
// while WeChat waits when it keeps no ledger. A 2xx answer means the
// backend took the event.
type Webhook struct {
	url     string
	secret  []byte
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
}

// NewWebhook returns a Webhook posting to url, signing with secret, each
// attempt bounded by timeout; now is its clock (time.Now when nil).
func NewWebhook(url string, secret []byte, timeout time.Duration, now func() time.Time) *Webhook {
	if now == nil {
		now = time.Now
	}
	return &Webhook{
		url: url, secret: secret, timeout: timeout, now: now,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:          256,
				MaxIdleConnsPerHost:   256,
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: timeout,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Send posts one event and reports the backend's answer.
func (w *Webhook) Send(ctx context.Context, id string, payload []byte) Result {
	status, snippet, err := w.post(ctx, id, payload)
	return Result{Status: status, Response: snippet, Err: err}
}

// Deliver posts one event and succeeds when the backend answers 2xx.
func (w *Webhook) Deliver(ctx context.Context, id string, payload []byte) error {
	r := w.Send(ctx, id, payload)
	switch {
	case r.Err != nil:
		return fmt.Errorf("upstream: %w", r.Err)
	case !r.Delivered():
		return fmt.Errorf("upstream answered %d", r.Status)
	}
	return nil
}

// post sends one event and returns the backend's status and the start of
// its answer.
func (w *Webhook) post(ctx context.Context, id string, body []byte) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	event.SetHeaders(req.Header, w.secret, id, w.now(), body)
	req.Header.Set("User-Agent", "caddy-wxpay")
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(snippet), nil
}

// Close closes the idle connections to the backend.
func (w *Webhook) Close() { w.client.CloseIdleConnections() }

// Interface guard
var _ Sender = (*Webhook)(nil)
