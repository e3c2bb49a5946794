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

	// How long one delivery attempt may take. Default: 10s; 5s with
	// `ack upstream`, where WeChat waits for the delivery.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long the gateway keeps retrying an event the backend does not
	// take; then the event becomes a dead letter (kept, and replayable
	// from the admin API). Default: 72h.
	RetryMaxAge caddy.Duration `json:"retry_max_age,omitempty"`

	// The longest wait between two attempts of one event. Retries back
	// off exponentially with jitter from about 2s up to this. Default: 10m.
	RetryMaxInterval caddy.Duration `json:"retry_max_interval,omitempty"`

	// How many deliveries may be in flight at once. Events of one order
	// are always delivered one at a time, in order. Default: 8.
	Concurrency int `json:"concurrency,omitempty"`
}

type upstream struct {
	url              string
	secret           []byte
	timeout          time.Duration
	retryMaxAge      time.Duration
	retryMaxInterval time.Duration
	concurrency      int
	http             *http.Client
}

// newUpstream checks and sets up the upstream; defaultTimeout depends on
// whether WeChat waits for the delivery.
func newUpstream(cfg *Upstream, repl *caddy.Replacer, defaultTimeout time.Duration) (*upstream, error) {
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
		timeout = defaultTimeout
	}
	for name, d := range map[string]caddy.Duration{"timeout": caddy.Duration(timeout), "retry_max_age": cfg.RetryMaxAge, "retry_max_interval": cfg.RetryMaxInterval} {
		if d < 0 {
			return nil, fmt.Errorf("%s %s is negative", name, time.Duration(d))
		}
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("concurrency %d is negative", cfg.Concurrency)
	}
	concurrency := cfg.Concurrency
	if concurrency == 0 {
		concurrency = 8
	}
	return &upstream{
		url:              raw,
		secret:           []byte(secret),
		timeout:          timeout,
		retryMaxAge:      time.Duration(cfg.RetryMaxAge),
		retryMaxInterval: time.Duration(cfg.RetryMaxInterval),
		concurrency:      concurrency,
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
	status, snippet, err := u.send(ctx, id, body, now)
	if err != nil {
		return &deliveryError{err: err}
	}
	if status < 200 || status > 299 {
		return &deliveryError{status: status, body: snippet}
	}
	return nil
}

// send POSTs one event and returns the backend's status and the start of
// its answer.
func (u *upstream) send(ctx context.Context, id string, body []byte, now time.Time) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	event.SetHeaders(req.Header, u.secret, id, now, body)
	req.Header.Set("User-Agent", "caddy-wxpay")
	resp, err := u.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(snippet), nil
}

func (u *upstream) close() { u.http.CloseIdleConnections() }
