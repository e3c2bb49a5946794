// Package caddymodule is the Caddy glue of caddy-wxpay, and only that: the
// wxpay app (configuration, provisioning, the ledger's lifecycle across
// reloads), the wxpay and wxpay_checkout HTTP handlers, their Caddyfile
// syntax, the admin API (admin.api.wxpay) and the `caddy wxpay` command.
// What the gateway does is package gateway's; the simulator's handler is
// in caddymodule/simulator, so that a production build does not contain
// it.
package caddymodule
