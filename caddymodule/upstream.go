package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/delivery"
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

// provision checks the upstream and returns the webhook that posts to it
// and the delivery policy; defaultTimeout depends on whether WeChat waits
// for the delivery.
func (cfg *Upstream) provision(repl *caddy.Replacer, defaultTimeout time.Duration, now func() time.Time) (*delivery.Webhook, delivery.Policy, error) {
	raw := strings.TrimSpace(repl.ReplaceAll(cfg.URL, ""))
	u, err := url.Parse(raw)
	if raw == "" {
		return nil, delivery.Policy{}, errors.New("url is required")
	}
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, delivery.Policy{}, fmt.Errorf("url %q is not an http(s) URL", raw)
	}
	secret := strings.TrimSpace(repl.ReplaceAll(cfg.Secret, ""))
	if cfg.Secret == "" {
		return nil, delivery.Policy{}, errors.New("secret is required: the backend needs it to verify events")
	}
	if len(secret) < 16 {
		return nil, delivery.Policy{}, fmt.Errorf("secret %s is %d characters once resolved; use at least 16 random characters", describeSecretSource(cfg.Secret), len(secret))
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout == 0 {
		timeout = defaultTimeout
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", timeout}, {"retry_max_age", time.Duration(cfg.RetryMaxAge)}, {"retry_max_interval", time.Duration(cfg.RetryMaxInterval)}} {
		if d.v < 0 {
			return nil, delivery.Policy{}, fmt.Errorf("%s %s is negative", d.name, d.v)
		}
	}
	if cfg.Concurrency < 0 {
		return nil, delivery.Policy{}, fmt.Errorf("concurrency %d is negative", cfg.Concurrency)
	}
	concurrency := cfg.Concurrency
	if concurrency == 0 {
		concurrency = 8
	}
	policy := delivery.Policy{
		Concurrency:    concurrency,
		AttemptTimeout: timeout,
		MaxInterval:    time.Duration(cfg.RetryMaxInterval),
		MaxAge:         time.Duration(cfg.RetryMaxAge),
	}
	return delivery.NewWebhook(raw, []byte(secret), timeout, now), policy, nil
}
