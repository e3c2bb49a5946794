// Command caddy is Caddy with the standard modules, caddy-wxpay and its
// simulator (the demo's wxpay_simulator), built from this checkout with the
// Go toolchain alone (xcaddy.sh builds the same with xcaddy). The
// integration tests that need a real process build it.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules and the WeChat Pay modules.
	_ "github.com/caddy-wxpay/caddy-wxpay"
	_ "github.com/caddy-wxpay/caddy-wxpay/caddymodule/simulator"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
