// Package caddymodule is the Caddy glue of caddy-wxpay: the wxpay app, the
// wxpay, wxpay_checkout and wxpay_simulator HTTP handlers, and their
// Caddyfile syntax.
package caddymodule
