package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/event"
)

// Upstream is the merchant's backend endpoint that receives events as
// signed JSON (see the README for the format and how to verify it).
type Upstream struct {
	// The URL events are POSTed to, e.g. http://127.0.0.1:8080/wxpay/events.
	// Required.
	URL string `json:"url,omitempty"`

	// The secret that keys the HMAC-SHA256 in the Wxpay-Signature header.
	// Give it as a placeholder ({env.WXPAY_UPSTREAM_SECRET}). Required, at
	// least 16 characters.
	Secret string `json:"secret,omitempty"`

	// How long one delivery may take. It must stay below WeChat's own
	// notification timeout while events are delivered before WeChat is
	// answered. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

type upstream struct {
	url     string
	secret  []byte
	timeout time.Duration
	http    *http.Client
}

func newUpstream(cfg *Upstream, repl *caddy.Replacer) (*upstream, error) {
	raw := strings.TrimSpace(repl.ReplaceAll(cfg.URL, ""))
	u, err := url.Parse(raw)
	if raw == "" {
		return nil, errors.New("url is required")
	}
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("url %q is not an http(s) URL", raw)
	}
	secret := strings.TrimSpace(repl.ReplaceAll(cfg.Secret, ""))
	if cfg.Secret == "" {
		return nil, errors.New("secret is required: the backend needs it to verify events")
	}
	if len(secret) < 16 {
		return nil, fmt.Errorf("secret %s is %d characters once resolved; use at least 16 random characters", describeSecretSource(cfg.Secret), len(secret))
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if timeout < 0 {
		return nil, fmt.Errorf("timeout %s is negative", timeout)
	}
	return &upstream{
		url:     raw,
		secret:  []byte(secret),
		timeout: timeout,
		http: &http.Client{
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
	}, nil
}

// deliveryError is a delivery the backend did not take.
type deliveryError struct {
	status int
	body   string
	err    error
}

func (e *deliveryError) Error() string {
	if e.err != nil {
		return "upstream: " + e.err.Error()
	}
	return fmt.Sprintf("upstream answered %d", e.status)
}

// deliver POSTs one event and succeeds when the backend answers 2xx.
func (u *upstream) deliver(ctx context.Context, id string, body []byte, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(body))
	if err != nil {
		return &deliveryError{err: err}
	}
	event.SetHeaders(req.Header, u.secret, id, now, body)
	req.Header.Set("User-Agent", "caddy-wxpay")
	resp, err := u.http.Do(req)
	if err != nil {
		return &deliveryError{err: err}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &deliveryError{status: resp.StatusCode, body: string(snippet)}
	}
	return nil
}

func (u *upstream) close() { u.http.CloseIdleConnections() }
