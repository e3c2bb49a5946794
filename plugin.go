// Package caddywxpay is the root of the caddy-wxpay module. Importing it
// registers the WeChat Pay Caddy modules, so that
//
//	xcaddy build --with github.com/caddy-wxpay/caddy-wxpay
//
// builds a Caddy binary with them.
package caddywxpay

import (
	// Registers the wxpay app, handlers and Caddyfile directives.
	_ "github.com/caddy-wxpay/caddy-wxpay/caddymodule"
)
