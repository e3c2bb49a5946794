#!/usr/bin/env bash
# Builds ./caddy: Caddy v2.11.9 with the caddy-wxpay module from this checkout
# and its simulator (wxpay_simulator), which the demo needs; --production
# leaves the simulator out, as `xcaddy build --with
# github.com/caddy-wxpay/caddy-wxpay` does.
#
#   ./xcaddy.sh                                      # writes ./caddy, with the simulator
#   ./xcaddy.sh --production --output /usr/local/bin/caddy
#   ./xcaddy.sh --production --with github.com/yroc92/postgres-storage   # and other Caddy modules
#
# Needs Go >= 1.26.8 and the Go module proxy; nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")"

CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
XCADDY_VERSION=${XCADDY_VERSION:-v0.4.5}
MODULE=github.com/caddy-wxpay/caddy-wxpay

# xcaddy runs "go get" for the plugin. This module lives in the checkout,
# not on the module proxy: pin it to v0.0.0, which the replacement by this
# directory serves without a version query, and keep the go command from
# asking the proxy or the checksum database about it.
export GOPRIVATE="${GOPRIVATE:+$GOPRIVATE,}$MODULE"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

output=./caddy
simulator=(--with "$MODULE/caddymodule/simulator@v0.0.0")
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--output)
		[ -n "${2:-}" ] || { echo "xcaddy.sh: --output needs a path" >&2; exit 2; }
		output=$2
		shift 2
		;;
	--production)
		simulator=()
		shift
		;;
	--with)
		[ -n "${2:-}" ] || { echo "xcaddy.sh: --with needs a module path (module[@version][=replacement])" >&2; exit 2; }
		extra+=(--with "$2")
		shift 2
		;;
	*)
		echo "xcaddy.sh: unknown option $1 (--output <path>, --production, --with <module>)" >&2
		exit 2
		;;
	esac
done

exec go run "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION" build "$CADDY_VERSION" \
	--with "$MODULE@v0.0.0=$PWD" \
	"${simulator[@]}" \
	"${extra[@]}" \
	--output "$output"
