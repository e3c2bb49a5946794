#!/usr/bin/env bash
# bench/load.sh: the load test of caddy-wxpay (issue #5). From the
# repository root:
#
#     bash bench/load.sh                       # defaults: ROUNDS=3 DURATION=10s
#     ROUNDS=2 DURATION=5s bash bench/load.sh  # a quick check
#
# It builds Caddy with the module and the helpers under bench/out/, installs
# wrk if missing (apt-get, as root), starts a fake WeChat Pay endpoint
# (bench/fakewechat) and then, for every run, a fresh Caddy, so that its
# peak RSS is that run's. Variants, interleaved round by round:
#
#   baseline        POST through a plain Caddy reverse_proxy to the fake
#                   endpoint, with a body of the same size as an order;
#   order           POST /wxpay/orders through the module to the same
#                   endpoint, each with its own out_trade_no (with the
#                   ledger on, once the gateway has one);
#   peer            the same orders to bench/handwritten: the v2 order flow
#                   as a team would write it with a WeChat SDK in a plain
#                   net/http service (no Caddy, no ledger), against the
#                   same fake endpoint: the hand-written yardstick;
#   order-off       the same with the storage-off configuration (only when
#                   order runs with the ledger): what the ledger costs;
#   intake-off      POST /wxpay/notify, pre-signed distinct notifications,
#                   with the notification storage off (today: the gateway
#                   delivers to the upstream before answering WeChat);
#   intake-durable  the same with durable storage (the ledger), measured
#                   only when the gateway accepts STORAGE_LINE; the
#                   notifications pay orders the ledger does not hold
#                   (placed outside the gateway: nothing to cross-check);
#   intake-known    the same, but the ledger starts with every order the
#                   notifications pay, as if the gateway had placed them
#                   (bench/seedorders): each notification is checked
#                   against its order, whose state becomes PAID in the
#                   event's transaction, as in production. Measured when
#                   STORAGE_LINE is "storage sqlite <file>".
#   order-v3        POST /v3pay/orders: the same JSAPI orders, for a merchant
#                   on APIv3 (the demo's v3 keys, public key mode), against
#                   the fake endpoint's signed v3 answer, with the ledger;
#                   loaded by a wrk of V3_THREADS threads (at its rate, under
#                   1,000 orders/s, one thread keeps the 50 connections
#                   busy; a second only takes turns on the cores the
#                   gateway's RSA needs);
#   order-pg        order, with the ledger on PostgreSQL (PG_DSN) instead
#                   of SQLite, a fresh schema each run;
#   intake-pg       intake-durable on PostgreSQL: every notification
#                   committed with synchronous_commit on before SUCCESS;
#   intake-pg2      intake-pg on two gateways (two Caddy processes) sharing
#                   the database, each loaded by a wrk of its own (one
#                   thread, half the connections, its own notifications):
#                   their sum against one gateway's, on the same cores;
#   v3-floor        not a Caddy run: BenchmarkV3OrderFloor (bench/), two
#                   RSA-2048 signatures and one verification per order on
#                   every core, the floor of a v3 order (issue #9), run in
#                   the same rounds; its "req/s" is 1e9 / ns/op.
#
# Everything listens on 127.0.0.1 only. Every process it starts is stopped
# on exit; every loop is bounded.
#
# Settings (environment):
#   ROUNDS=3 DURATION=10s WARMUP=2s THREADS=2 CONNECTIONS=50 V3_THREADS=1
#   GW_PORT=18080 FAKE_PORT=18081 BASE_PORT=18082 PEER_PORT=18083 ADMIN_PORT=18019
#   STORAGE_LINE='storage sqlite {rundir}/ledger.db'  the wxpay global option
#       line of the durable variant ({rundir} is emptied before each run)
#   STORAGE_OFF_LINE='ack upstream'  the line of the storage-off variant;
#       when the gateway does not accept it, no line is used
#   ORDER_STORAGE=durable|off  the storage of the baseline and order runs
#       (durable when supported: the target is with the ledger on)
#   ORDER_OFF=1  with durable orders, also measure order-off: orders with
#       the storage-off configuration, to show what the ledger costs
#   NOTIFY_DOCS=auto  distinct notifications per run (auto: 15000/s)
#   SYSCALLS=0  1: afterwards, Caddy's system calls per request under each
#       load (strace -c, needs strace; PROFILE_SECONDS each)
#   PROFILE_SECONDS=10  length of each profile and system-call count
#   PROFILE=0  1: afterwards, CPU profiles of Caddy under each load, from
#       its admin endpoint, into bench/out/profile-*.pprof and *.top.txt
#   PG_DSN=$WXPAY_TEST_POSTGRES  a PostgreSQL database the PostgreSQL
#       variants may create the schema wxpay_bench in (dropped and created
#       again before each of their runs); unset: they are not measured
#   SKIP_BUILD=0  1: reuse the binaries in bench/out/
#   ONLY=""  a space-separated subset of the variants to run (experiments)
#   COMPARE_BIN=""  another Caddy binary (e.g. built from an earlier commit):
#       each gateway variant also runs with it, as <variant>@compare, in the
#       same interleaved rounds, and the summary gives this build over that
#       one (req/s, CPU per request) with the per-round paired range
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/bench/out

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-2}
V3_THREADS=${V3_THREADS:-1}
CONNECTIONS=${CONNECTIONS:-50}
GW_PORT=${GW_PORT:-18080}
FAKE_PORT=${FAKE_PORT:-18081}
BASE_PORT=${BASE_PORT:-18082}
ADMIN_PORT=${ADMIN_PORT:-18019}
PEER_PORT=${PEER_PORT:-18083}
STORAGE_LINE=${STORAGE_LINE-storage sqlite \{rundir\}/ledger.db}
STORAGE_OFF_LINE=${STORAGE_OFF_LINE-ack upstream}
ORDER_STORAGE=${ORDER_STORAGE:-durable}
ORDER_OFF=${ORDER_OFF:-1}
NOTIFY_DOCS=${NOTIFY_DOCS:-auto}
PROFILE=${PROFILE:-0}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
SKIP_BUILD=${SKIP_BUILD:-0}
COMPARE_BIN=${COMPARE_BIN:-}
PG_DSN=${PG_DSN-${WXPAY_TEST_POSTGRES:-}}
PG_SCHEMA=wxpay_bench
# intake-pg2's second gateway.
GW2_PORT=$((GW_PORT + 10)) BASE2_PORT=$((BASE_PORT + 10)) ADMIN2_PORT=$((ADMIN_PORT + 10))

API_TOKEN=bench-api-token-0123456789abcdef     # bench.APIToken
UPSTREAM_SECRET=bench-upstream-secret-0123456789 # bench.UpstreamSecret

die() { echo "load.sh: $*" >&2; exit 1; }

# ---- settings ---------------------------------------------------------------
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 50)) || die "ROUNDS must be 1..50"
[[ $THREADS =~ ^[0-9]+$ ]] && ((THREADS >= 1 && THREADS <= 16)) || die "THREADS must be 1..16"
[[ $V3_THREADS =~ ^[0-9]+$ ]] && ((V3_THREADS >= 1 && V3_THREADS <= 16)) || die "V3_THREADS must be 1..16"
[[ $CONNECTIONS =~ ^[0-9]+$ ]] && ((CONNECTIONS >= THREADS && CONNECTIONS <= 10000)) || die "CONNECTIONS must be THREADS..10000"
((V3_THREADS <= CONNECTIONS)) || die "V3_THREADS must be at most CONNECTIONS"
seconds() { # 10s, 2m, 500ms, 0 -> whole seconds (rounded up)
	case $1 in
	0) echo 0 ;;
	*ms) echo $(((${1%ms} + 999) / 1000)) ;;
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*) die "cannot read the duration $1 (use 10s, 2m, 500ms)" ;;
	esac
}
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
((DURATION_S >= 1 && DURATION_S <= 3600)) || die "DURATION must be 1s..60m"
((WARMUP_S <= 600)) || die "WARMUP must be at most 10m"
for p in "$GW_PORT" "$FAKE_PORT" "$BASE_PORT" "$ADMIN_PORT"; do
	[[ $p =~ ^[0-9]+$ ]] && ((p > 1024 && p < 65536)) || die "port $p must be 1025..65535"
done
if [[ $NOTIFY_DOCS == auto ]]; then
	NOTIFY_DOCS=$((15000 * DURATION_S))
fi
[[ $NOTIFY_DOCS =~ ^[0-9]+$ ]] && ((NOTIFY_DOCS >= THREADS)) || die "NOTIFY_DOCS must be a number ≥ THREADS"

# ---- processes, cleaned up on exit ------------------------------------------
FAKE_PID='' CADDY_PID='' CADDY2_PID='' WRK_PID='' WRK2_PID='' PROF_PID=''
stop_pid() { # pid: TERM, wait at most 10 s, then KILL
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	stop_pid "$PROF_PID"
	stop_pid "$WRK_PID"
	stop_pid "$WRK2_PID"
	stop_pid "$CADDY_PID"
	stop_pid "$CADDY2_PID"
	stop_pid "$FAKE_PID"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_http() { # url: until anything answers, at most 15 s
	local i
	for ((i = 0; i < 150; i++)); do
		if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
		sleep 0.1
	done
	return 1
}

mkdir -p "$OUT/logs"
SUMMARY=$OUT/summary.txt
RESULTS=$OUT/results.tsv
: >"$SUMMARY"
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# ---- machine ----------------------------------------------------------------
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
say "caddy-wxpay load test: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
say "machine: $(nproc) CPUs ($CPU_MODEL), $(awk '/^MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
say "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo ' + uncommitted changes'), $(go version | awk '{print $3}')"
say "busy:    load average $(cut -d' ' -f1-3 /proc/loadavg) before the test (a shared machine: other work competes for the CPUs)"
say "load:    wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (order-v3: -t$V3_THREADS), $ROUNDS rounds, warm-up $WARMUP; a fresh Caddy per run"

# ---- build ------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
	echo "installing wrk (apt-get)"
	[[ $(id -u) == 0 ]] || die "wrk is missing and installing it needs root: apt-get install wrk"
	apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null || die "apt-get install wrk failed"
fi
command -v curl >/dev/null || die "curl is missing"
say "tools:   $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
if [[ $SKIP_BUILD != 1 ]]; then
	echo "building bench/out/caddy and the helpers"
	# Copied, not used where the linker wrote it: the Go linker writes its
	# output through mmap, and a process running such a file maps about
	# 10 MB more of it (file-backed RSS) than it does a copy, which would
	# skew the peak RSS against COMPARE_BIN.
	go build -o "$OUT/caddy.linked" ./cmd/caddy
	cp "$OUT/caddy.linked" "$OUT/caddy"
	rm -f "$OUT/caddy.linked"
	go build -o "$OUT/fakewechat" ./bench/fakewechat
	go build -o "$OUT/handwritten" ./bench/handwritten
	go build -o "$OUT/gennotify" ./bench/gennotify
	go build -o "$OUT/seedorders" ./bench/seedorders
	go test -c -o "$OUT/bench.test" ./bench
fi
for b in caddy fakewechat handwritten gennotify seedorders bench.test; do [[ -x $OUT/$b ]] || die "bench/out/$b is missing"; done
if [[ -n $COMPARE_BIN ]]; then
	[[ -x $COMPARE_BIN ]] || die "COMPARE_BIN $COMPARE_BIN is not an executable"
	say "compare: each gateway variant also with $COMPARE_BIN (<variant>@compare, run from a copy)"
	cp "$COMPARE_BIN" "$OUT/caddy-compare"
	COMPARE_BIN=$OUT/caddy-compare
fi
RUN_BIN=$OUT/caddy

echo "writing $NOTIFY_DOCS notifications (+ warm-up and smoke sets)"
# An earlier run's sets (with more THREADS, more parts) would be read too.
rm -f "$OUT"/notify-*.xml "$OUT"/warmup-*.xml "$OUT"/smoke-*.xml
"$OUT/gennotify" -n "$NOTIFY_DOCS" -parts "$THREADS" -prefix L -out "$OUT/notify" >/dev/null
"$OUT/gennotify" -n $((THREADS * 15000 * (WARMUP_S > 0 ? WARMUP_S : 1))) -parts "$THREADS" -prefix W -out "$OUT/warmup" >/dev/null
"$OUT/gennotify" -n 1000 -parts 1 -prefix S -out "$OUT/smoke" >/dev/null

# ---- fake WeChat ------------------------------------------------------------
for p in "$GW_PORT" "$FAKE_PORT" "$BASE_PORT" "$ADMIN_PORT"; do
	port_free "$p" || die "127.0.0.1:$p is in use (set GW_PORT, FAKE_PORT, BASE_PORT, ADMIN_PORT)"
done
GOMAXPROCS=1 "$OUT/fakewechat" -listen "127.0.0.1:$FAKE_PORT" -root "$ROOT" >"$OUT/logs/fakewechat.log" 2>&1 &
FAKE_PID=$!
wait_http "http://127.0.0.1:$FAKE_PORT/" || die "fakewechat did not start: $(tail -5 "$OUT/logs/fakewechat.log")"

# ---- Caddy configurations ---------------------------------------------------
RUNDIR=$OUT/run
write_caddyfile() { # file storage-line [v3]
	local file=$1 line=${2//\{rundir\}/$RUNDIR} v3merchant='' v3site=''
	if [[ ${3:-} == v3 ]]; then
		v3merchant="merchant v3 {
			mch_id      10000300
			app_id      wxd930ea5d5a258f4f
			api_version v3
			api_v3_key  caddywxpaydemoapiv3key0123456789
			private_key $ROOT/demo/v3/apiclient_key.pem
			merchant_cert $ROOT/demo/v3/apiclient_cert.pem
			wechatpay_public_key PUB_KEY_ID_0110000100202612020000000000000001 $ROOT/demo/v3/pub_key.pem
			notify_url  http://127.0.0.1:$GW_PORT/v3pay/notify
			insecure_notify_url
			endpoint    http://127.0.0.1:$FAKE_PORT
			timeout     6s
		}"
		v3site="wxpay v3 {
		base_path /v3pay
	}"
	fi
	cat >"$file" <<EOF
# Generated by bench/load.sh; do not edit.
{
	admin 127.0.0.1:$ADMIN_PORT
	persist_config off
	storage file_system $RUNDIR/caddy-data
	auto_https off
	wxpay {
		merchant default {
			mch_id      10000100
			app_id      wxd930ea5d5a258f4f
			api_key     192006250b4c09247ec02edce69f6a2d
			notify_url  http://127.0.0.1:$GW_PORT/wxpay/notify
			insecure_notify_url
			endpoint    http://127.0.0.1:$FAKE_PORT
			timeout     6s
		}
		$v3merchant
		upstream http://127.0.0.1:$FAKE_PORT/upstream/events {
			secret $UPSTREAM_SECRET
		}
		api_token $API_TOKEN
		$line
	}
}

# The gateway.
http://127.0.0.1:$GW_PORT {
	bind 127.0.0.1
	$v3site
	wxpay
}

# The baseline: a plain reverse_proxy hop to the same endpoint.
http://127.0.0.1:$BASE_PORT {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$FAKE_PORT
}
EOF
}
adapts() { # file: does Caddy accept it? (formats it first)
	"$OUT/caddy" fmt --overwrite "$1" 2>/dev/null || true
	"$OUT/caddy" adapt --config "$1" --adapter caddyfile >/dev/null 2>"$1.adapt.err"
}

CFG_OFF=$OUT/Caddyfile.off
CFG_DURABLE=$OUT/Caddyfile.durable
OFF_DESC="the gateway's default (no storage line), as it does not accept '$STORAGE_OFF_LINE'"
write_caddyfile "$CFG_OFF" ""
adapts "$CFG_OFF" || die "the base Caddyfile does not adapt: $(cat "$CFG_OFF.adapt.err")"
if [[ -n $STORAGE_OFF_LINE ]]; then
	write_caddyfile "$CFG_OFF.try" "$STORAGE_OFF_LINE"
	if adapts "$CFG_OFF.try"; then
		mv "$CFG_OFF.try" "$CFG_OFF"
		OFF_DESC="storage off ('$STORAGE_OFF_LINE')"
	fi
fi
DURABLE=0
DURABLE_NOTE=
if [[ -n $STORAGE_LINE ]]; then
	write_caddyfile "$CFG_DURABLE" "$STORAGE_LINE"
	if adapts "$CFG_DURABLE"; then
		DURABLE=1
	else
		DURABLE_NOTE=$(grep -v '^[[:space:]]*$' "$CFG_DURABLE.adapt.err" | tail -1 | cut -c1-200)
	fi
fi
CFG_MAIN=$CFG_OFF
MAIN_DESC=$OFF_DESC
if ((DURABLE)) && [[ $ORDER_STORAGE == durable ]]; then
	CFG_MAIN=$CFG_DURABLE
	MAIN_DESC="durable storage ('$STORAGE_LINE')"
fi
CFG_PG=
if ((DURABLE)) && [[ -n $PG_DSN ]]; then
	if ! command -v psql >/dev/null; then
		say "order-pg, intake-pg NOT MEASURED: psql is missing (Debian: postgresql-client)"
	elif ! psql "$PG_DSN" -Atqc 'select 1' >/dev/null 2>"$OUT/logs/psql.err"; then
		say "order-pg, intake-pg NOT MEASURED: PG_DSN does not connect ($(tail -1 "$OUT/logs/psql.err" | cut -c1-160))"
	else
		write_caddyfile "$OUT/Caddyfile.pg" 'storage postgres {env.WXPAY_DATABASE_URL}'
		GW_PORT=$GW2_PORT BASE_PORT=$BASE2_PORT ADMIN_PORT=$ADMIN2_PORT write_caddyfile "$OUT/Caddyfile.pg2" 'storage postgres {env.WXPAY_DATABASE_URL}'
		if adapts "$OUT/Caddyfile.pg"; then
			CFG_PG=$OUT/Caddyfile.pg
			say "PostgreSQL: $(psql "$PG_DSN" -Atqc 'show server_version') at $(psql "$PG_DSN" -Atqc "select coalesce(inet_server_addr()::text, 'socket') || ':' || current_setting('port') || '/' || current_database()"), synchronous_commit $(psql "$PG_DSN" -Atqc 'show synchronous_commit') (the ledger sets it on for events), fsync $(psql "$PG_DSN" -Atqc 'show fsync')"
		else
			say "order-pg, intake-pg NOT MEASURED: the gateway does not accept 'storage postgres' ($(tail -1 "$OUT/Caddyfile.pg.adapt.err" | cut -c1-200))"
		fi
	fi
elif ((DURABLE)); then
	say "order-pg, intake-pg NOT MEASURED: set PG_DSN (or WXPAY_TEST_POSTGRES) to a PostgreSQL database"
fi
# pg_dsn: PG_DSN with the bench schema as search_path.
pg_dsn() {
	case $PG_DSN in
	*://*\?*) echo "$PG_DSN&search_path=$PG_SCHEMA" ;;
	*://*) echo "$PG_DSN?search_path=$PG_SCHEMA" ;;
	*) echo "$PG_DSN search_path=$PG_SCHEMA" ;;
	esac
}
CFG_V3=
if ((DURABLE)); then
	write_caddyfile "$OUT/Caddyfile.v3" "$STORAGE_LINE" v3
	if adapts "$OUT/Caddyfile.v3"; then
		CFG_V3=$OUT/Caddyfile.v3
	else
		say "order-v3 NOT MEASURED: the gateway does not accept an APIv3 merchant ($(tail -1 "$OUT/Caddyfile.v3.adapt.err" | cut -c1-200))"
	fi
fi
say "gateway: baseline and order runs with $MAIN_DESC"
say "intake:  off = $OFF_DESC"
# intake-known: the ledger file of STORAGE_LINE, seeded once with the
# orders of every notification, copied into each run's directory.
SEED_FILE=
if ((DURABLE)) && [[ $STORAGE_LINE =~ ^storage[[:space:]]+sqlite[[:space:]]+\{rundir\}/([^[:space:]]+)$ ]]; then
	SEED_FILE=${BASH_REMATCH[1]}
	rm -rf "$OUT/seeded"
	"$OUT/seedorders" -ledger "$OUT/seeded/$SEED_FILE" "$OUT"/notify-*.xml "$OUT"/warmup-*.xml "$OUT"/smoke-*.xml >"$OUT/logs/seedorders.log" 2>&1 ||
		die "seedorders failed: $(tail -3 "$OUT/logs/seedorders.log")"
	[[ ! -e $OUT/seeded/$SEED_FILE-wal ]] || die "seedorders left a WAL file behind"
fi
if ((DURABLE)); then
	say "intake:  durable = '$STORAGE_LINE'"
	if [[ -n $SEED_FILE ]]; then
		say "intake:  known = durable, the ledger holding the order of every notification ($(grep -o '[0-9]* orders' "$OUT/logs/seedorders.log"))"
	else
		say "intake:  known NOT MEASURED: STORAGE_LINE is not 'storage sqlite {rundir}/<file>'"
	fi
else
	say "intake:  durable storage NOT MEASURED: the gateway does not accept '$STORAGE_LINE' yet ($DURABLE_NOTE)"
fi

# ---- one run ------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# start_peer logfile: the hand-written peer, in CADDY_PID's place (its CPU
# and RSS are measured as Caddy's are).
start_peer() {
	"$OUT/handwritten" -listen "127.0.0.1:$PEER_PORT" -endpoint "http://127.0.0.1:$FAKE_PORT" >"$1" 2>&1 &
	CADDY_PID=$!
	wait_http "http://127.0.0.1:$PEER_PORT/" || die "the hand-written peer did not start; see $1: $(tail -3 "$1")"
}

start_caddy() { # config logfile [seeded]
	rm -rf "$RUNDIR"
	mkdir -p "$RUNDIR"
	if [[ ${3:-} == seeded ]]; then
		cp "$OUT/seeded/$SEED_FILE" "$RUNDIR/$SEED_FILE"
	fi
	if [[ $1 == "$CFG_PG" ]]; then
		psql "$PG_DSN" -qc "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" -c "CREATE SCHEMA $PG_SCHEMA" >/dev/null 2>&1 ||
			die "could not create the schema $PG_SCHEMA in PG_DSN"
	fi
	WXPAY_DATABASE_URL=$( [[ -n $PG_DSN ]] && pg_dsn) XDG_CONFIG_HOME=$RUNDIR/xdg XDG_DATA_HOME=$RUNDIR/xdg \
		"$RUN_BIN" run --config "$1" --adapter caddyfile >"$2" 2>&1 &
	CADDY_PID=$!
	wait_http "http://127.0.0.1:$GW_PORT/" && wait_http "http://127.0.0.1:$BASE_PORT/" ||
		die "Caddy did not start; see $2: $(tail -3 "$2")"
}
stop_caddy() {
	stop_pid "$CADDY_PID"
	CADDY_PID=
	if [[ -n $CADDY2_PID ]]; then
		stop_pid "$CADDY2_PID"
		CADDY2_PID=
	fi
}

# start_caddy2 config logfile: intake-pg2's second gateway, on the run
# directory and the database the first one set up.
start_caddy2() {
	WXPAY_DATABASE_URL=$(pg_dsn) XDG_CONFIG_HOME=$RUNDIR/xdg2 XDG_DATA_HOME=$RUNDIR/xdg2 \
		"$RUN_BIN" run --config "$1" --adapter caddyfile >"$2" 2>&1 &
	CADDY2_PID=$!
	wait_http "http://127.0.0.1:$GW2_PORT/" || die "the second Caddy did not start; see $2: $(tail -3 "$2")"
}

# wrk_pair secs outfile: intake on both gateways at once, a wrk each (one
# thread, half the connections, files 0 and 1); one BENCH line of their
# sum (requests, errors, wraps), the longer duration and the first's
# latency percentiles.
wrk_pair() {
	local secs=$1 out=$2 half=$((CONNECTIONS / 2))
	wrk -t1 -c"$half" -d"${secs}s" --latency -s "$ROOT/bench/wrk/notify.lua" "http://127.0.0.1:$GW_PORT/wxpay/notify" \
		-- "$OUT/notify" /wxpay/notify 0 >"$out.1" 2>&1 &
	WRK_PID=$!
	wrk -t1 -c"$half" -d"${secs}s" --latency -s "$ROOT/bench/wrk/notify.lua" "http://127.0.0.1:$GW2_PORT/wxpay/notify" \
		-- "$OUT/notify" /wxpay/notify 1 >"$out.2" 2>&1 &
	WRK2_PID=$!
	local rc=0
	wait "$WRK_PID" || rc=1
	wait "$WRK2_PID" || rc=1
	WRK_PID='' WRK2_PID=''
	cat "$out.1" "$out.2" >"$out"
	((rc == 0)) || return 1
	awk '/^BENCH / {
		n++
		for (i = 2; i <= NF; i++) { split($i, p, "="); v[n, p[1]] = p[2] }
	} END {
		if (n != 2) exit 1
		d = v[1, "duration_us"] > v[2, "duration_us"] ? v[1, "duration_us"] : v[2, "duration_us"]
		printf "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d", v[1, "requests"] + v[2, "requests"], d, v[1, "p50_us"], v[1, "p99_us"]
		split("connect read write status timeout wraps", k, " ")
		for (j = 1; j <= 6; j++) printf " %s=%d", k[j], v[1, k[j]] + v[2, k[j]]
		printf "\n"
	}' "$out" >>"$out"
}

# smoke kind n: one request of the kind, checked, before a run's load.
smoke() {
	local kind=$1 n=$2 out code
	case $kind in
	order | order-v3 | baseline | peer)
		local url=http://127.0.0.1:$GW_PORT/wxpay/orders want='"paySign"'
		[[ $kind == order-v3 ]] && url=http://127.0.0.1:$GW_PORT/v3pay/orders
		[[ $kind == peer ]] && url=http://127.0.0.1:$PEER_PORT/orders
		[[ $kind == baseline ]] && url=http://127.0.0.1:$BASE_PORT/pay/unifiedorder want='prepay_id'
		out=$(curl -s --max-time 10 -w '\n%{http_code}' "$url" -H "Authorization: Bearer $API_TOKEN" \
			-H 'Content-Type: application/json' \
			-d "{\"out_trade_no\":\"S$(date +%s)R$n\",\"total_fee\":1,\"body\":\"smoke\",\"trade_type\":\"JSAPI\",\"openid\":\"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o\"}")
		;;
	intake)
		local want='SUCCESS'
		out=$(sed -n "$((n % 1000 + 1))p" "$OUT/smoke-0.xml" | curl -s --max-time 10 -w '\n%{http_code}' \
			"http://127.0.0.1:$GW_PORT/wxpay/notify" -H 'Content-Type: text/xml' --data-binary @-)
		;;
	esac
	code=${out##*$'\n'}
	if [[ $code != 200 || $out != *"$want"* ]]; then
		echo "smoke test of $kind failed: HTTP $code: ${out%$'\n'*}" >&2
		return 1
	fi
}

# wrk_run kind url seconds script-args...: runs wrk in the background (so
# that the EXIT trap can stop it) and prints its output.
wrk_run() {
	local kind=$1 url=$2 secs=$3
	shift 3
	local script=$ROOT/bench/wrk/orders.lua
	[[ $kind == intake ]] && script=$ROOT/bench/wrk/notify.lua
	local threads=$THREADS
	[[ $kind == order-v3 ]] && threads=$V3_THREADS
	wrk -t"$threads" -c"$CONNECTIONS" -d"${secs}s" --latency -s "$script" "$url" -- "$@" >"$OUT/wrk.tmp" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || { WRK_PID=; cat "$OUT/wrk.tmp"; return 1; }
	WRK_PID=
	cat "$OUT/wrk.tmp"
}

wrk_args() { # kind run-id phase -> url and script args
	case $1 in
	baseline) echo "http://127.0.0.1:$BASE_PORT/pay/unifiedorder /pay/unifiedorder $API_TOKEN $2" ;;
	order) echo "http://127.0.0.1:$GW_PORT/wxpay/orders /wxpay/orders $API_TOKEN $2" ;;
	order-v3) echo "http://127.0.0.1:$GW_PORT/v3pay/orders /v3pay/orders $API_TOKEN $2" ;;
	peer) echo "http://127.0.0.1:$PEER_PORT/orders /orders $API_TOKEN $2" ;;
	intake) echo "http://127.0.0.1:$GW_PORT/wxpay/notify $OUT/$3 /wxpay/notify" ;;
	esac
}

printf 'variant\tround\trequests\tseconds\trps\tp50_ms\tp99_ms\terrors\tcpu_us_per_req\tpeak_rss_mb\twraps\tfake_cpu_us_per_req\tlog_errors\tloadavg1\twrk_cpu_us_per_req\n' >"$RESULTS"
RUN_NO=0
run_variant() { # name kind config round
	local name=$1 kind=$2 cfg=$3 round=$4 log wout args line
	RUN_NO=$((RUN_NO + 1))
	log=$OUT/logs/$name-$round.caddy.log
	RUN_BIN=$OUT/caddy
	[[ $name == *@compare ]] && RUN_BIN=$COMPARE_BIN
	if [[ $kind == peer ]]; then
		start_peer "$log"
	else
		start_caddy "$cfg" "$log" "$( [[ ${name%@compare} == intake-known ]] && echo seeded)"
	fi
	local pair=0
	if [[ ${name%@compare} == intake-pg2 ]]; then
		pair=1
		start_caddy2 "$OUT/Caddyfile.pg2" "${log%.caddy.log}.caddy2.log"
	fi
	smoke "$kind" "$RUN_NO" || die "run $name round $round: see $log"
	local run_id
	run_id=$(date +%s)$RUN_NO
	if ((WARMUP_S > 0)); then
		read -r -a args <<<"$(wrk_args "$kind" "W$run_id" warmup)"
		wrk_run "$kind" "${args[0]}" "$WARMUP_S" "${args[@]:1}" >"$OUT/logs/$name-$round.warmup.txt" 2>&1 ||
			die "warm-up of $name failed: $(tail -5 "$OUT/logs/$name-$round.warmup.txt")"
	fi
	local c0 f0 c1 f1 hwm
	c0=$(cpu_ticks "$CADDY_PID")
	((pair)) && c0=$((c0 + $(cpu_ticks "$CADDY2_PID")))
	f0=$(cpu_ticks "$FAKE_PID")
	read -r -a args <<<"$(wrk_args "$kind" "$run_id" notify)"
	wout=$OUT/logs/$name-$round.wrk.txt
	# wrk's own CPU: the shell's children's times (times, in this shell)
	# before and after it ran; it is the only child that ends meanwhile.
	times >"$OUT/times0.tmp"
	if ((pair)); then
		wrk_pair "$DURATION_S" "$wout" || die "wrk failed: $(tail -5 "$wout")"
	else
		wrk_run "$kind" "${args[0]}" "$DURATION_S" "${args[@]:1}" >"$wout" 2>&1 || die "wrk failed: $(tail -5 "$wout")"
	fi
	times >"$OUT/times1.tmp"
	local w_us
	w_us=$(awk 'function us(t, m) {split(t, m, "m"); sub(/s$/, "", m[2]); return (m[1] * 60 + m[2]) * 1e6}
		FNR == 2 {v = us($1) + us($2); if (FILENAME ~ /times0/) a = v; else b = v} END {printf "%.0f", b - a}' "$OUT/times0.tmp" "$OUT/times1.tmp")
	c1=$(cpu_ticks "$CADDY_PID")
	((pair)) && c1=$((c1 + $(cpu_ticks "$CADDY2_PID")))
	f1=$(cpu_ticks "$FAKE_PID")
	hwm=$(hwm_kb "$CADDY_PID")
	local load1
	load1=$(cut -d' ' -f1 /proc/loadavg)
	stop_caddy
	RUN_BIN=$OUT/caddy
	line=$(grep '^BENCH ' "$wout" | tail -1) || die "no BENCH line in $wout"
	local logerr
	# Requests in flight when wrk stops are cancelled ("context canceled"):
	# not errors of the gateway.
	logerr=$(grep '"level":"error"' "$log" | grep -vc 'context canceled' || true)
	# shellcheck disable=SC2086
	awk -v name="$name" -v round="$round" -v c="$((c1 - c0))" -v f="$((f1 - f0))" -v tck="$CLK_TCK" \
		-v hwm="$hwm" -v logerr="$logerr" -v load1="$load1" -v line="$line" -v wus="$w_us" 'BEGIN {
		n = split(line, kv, " ")
		for (i = 2; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
		req = v["requests"]; secs = v["duration_us"] / 1e6
		errs = v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"]
		printf "%s\t%d\t%d\t%.2f\t%.1f\t%.3f\t%.3f\t%d\t%.1f\t%.1f\t%d\t%.1f\t%d\t%s\t%.1f\n", name, round, req, secs,
			(secs > 0 ? req / secs : 0), v["p50_us"] / 1000, v["p99_us"] / 1000, errs,
			(req > 0 ? c * 1e6 / tck / req : 0), hwm / 1024, v["wraps"], (req > 0 ? f * 1e6 / tck / req : 0), logerr, load1,
			(req > 0 ? wus / req : 0)
	}' >>"$RESULTS"
	tail -1 "$RESULTS" | awk -F'\t' '{printf "  %-15s round %d: %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  CPU %6.1f µs/req  RSS %6.1f MB  errors %d  load %s%s\n",
		$1, $2, $5, $6, $7, $9, $10, $8, $14, ($11 > 0 ? "  WRAPPED " $11 "x" : "")}'
}

# run_floor round: BenchmarkV3OrderFloor for DURATION, as a row of its own.
run_floor() {
	local round=$1 out ns load1
	out=$(cd "$ROOT/bench" && "$OUT/bench.test" -test.run '^$' -test.bench '^BenchmarkV3OrderFloor$' -test.benchtime "${DURATION_S}s" 2>&1) ||
		die "BenchmarkV3OrderFloor failed: $out"
	ns=$(awk '/^BenchmarkV3OrderFloor/ {print $3}' <<<"$out")
	[[ -n $ns ]] || die "no BenchmarkV3OrderFloor line: $out"
	load1=$(cut -d' ' -f1 /proc/loadavg)
	awk -v round="$round" -v ns="$ns" -v load1="$load1" 'BEGIN {
		printf "v3-floor\t%d\t0\t0\t%.1f\t0\t0\t0\t%.1f\t0\t0\t0\t0\t%s\t0\n", round, 1e9 / ns, ns / 1000 * 2, load1
	}' >>"$RESULTS"
	tail -1 "$RESULTS" | awk -F'\t' '{printf "  %-15s round %d: %8.0f orders/s of crypto alone (%.0f µs of CPU each)  load %s\n", $1, $2, $5, $9, $14}'
}

VARIANTS=(baseline order peer)
# With the ledger on for orders, also orders without it: what the ledger costs.
[[ $CFG_MAIN == "$CFG_DURABLE" && $ORDER_OFF == 1 ]] && VARIANTS+=(order-off)
VARIANTS+=(intake-off)
((DURABLE)) && VARIANTS+=(intake-durable)
[[ -n $SEED_FILE ]] && VARIANTS+=(intake-known)
[[ -n $CFG_PG ]] && VARIANTS+=(order-pg intake-pg intake-pg2)
[[ -n $CFG_V3 ]] && VARIANTS+=(order-v3 v3-floor)
# ONLY="v1 v2 …" keeps just those variants (quick experiments; the targets
# need them all).
if [[ -n ${ONLY:-} ]]; then
	kept=()
	for v in "${VARIANTS[@]}"; do [[ " $ONLY " == *" $v "* ]] && kept+=("$v"); done
	((${#kept[@]})) || die "ONLY=$ONLY names none of: ${VARIANTS[*]}"
	VARIANTS=("${kept[@]}")
fi
if [[ -n $COMPARE_BIN ]]; then
	paired_variants=()
	for v in "${VARIANTS[@]}"; do
		paired_variants+=("$v")
		[[ $v == baseline || $v == peer || $v == order-v3 || $v == v3-floor ]] || paired_variants+=("$v@compare")
	done
	VARIANTS=("${paired_variants[@]}")
fi
variant_kind() { case ${1%@compare} in baseline) echo baseline ;; peer) echo peer ;; order-v3) echo order-v3 ;; order*) echo order ;; intake*) echo intake ;; esac; }
variant_cfg() { case ${1%@compare} in baseline | order) echo "$CFG_MAIN" ;; order-off | intake-off) echo "$CFG_OFF" ;; intake-durable | intake-known) echo "$CFG_DURABLE" ;; order-pg | intake-pg | intake-pg2) echo "$CFG_PG" ;; order-v3) echo "$CFG_V3" ;; esac; }
echo
echo "measuring ${VARIANTS[*]}, interleaved, $ROUNDS rounds of $DURATION each"
for ((round = 1; round <= ROUNDS; round++)); do
	for v in "${VARIANTS[@]}"; do
		if [[ $v == v3-floor ]]; then
			run_floor "$round"
			continue
		fi
		run_variant "$v" "$(variant_kind "$v")" "$(variant_cfg "$v")" "$round"
	done
done

# ---- table --------------------------------------------------------------------
col() { awk -F'\t' -v v="$1" -v c="$2" 'NR > 1 && $1 == v {print $c}' "$RESULTS" | sort -g; }
median() { col "$1" "$2" | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
minv() { col "$1" "$2" | head -1; }
maxv() { col "$1" "$2" | tail -1; }
sumv() { col "$1" "$2" | awk '{s += $1} END {print s + 0}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 > 0) printf "%.2f", a / b; else print "n/a"}'; }
# paired per-round ratios of column c, variant a over variant b: "min–max"
paired() {
	awk -F'\t' -v a="$1" -v b="$2" -v c="$3" 'NR > 1 && $1 == a {x[$2] = $c} NR > 1 && $1 == b {y[$2] = $c}
	END {lo = ""; for (r in x) if (y[r] > 0) {q = x[r] / y[r]; if (lo == "" || q < lo) lo = q; if (hi == "" || q > hi) hi = q}
	if (lo == "") print "n/a"; else printf "%.2f–%.2f", lo, hi}' "$RESULTS"
}

say ""
say "Results: medians over $ROUNDS rounds (min–max); ratios are medians over the baseline's medians, with the per-round paired range"
say ""
say "| variant | req/s median (min–max) | p50 ms | p99 ms | Caddy CPU µs/req | Caddy peak RSS MB | errors | req/s ratio | CPU ratio | RSS ratio |"
say "|---|---|---|---|---|---|---|---|---|---|"
B_RPS=$(median baseline 5) B_CPU=$(median baseline 9) B_RSS=$(median baseline 10)
TOTAL_ERRORS=0 TOTAL_LOGERR=0 TOTAL_WRAPS=0
for v in "${VARIANTS[@]}"; do
	rps=$(median "$v" 5) cpu=$(median "$v" 9) rss=$(median "$v" 10)
	errs=$(sumv "$v" 8)
	TOTAL_ERRORS=$((TOTAL_ERRORS + errs))
	TOTAL_LOGERR=$((TOTAL_LOGERR + $(sumv "$v" 13)))
	TOTAL_WRAPS=$((TOTAL_WRAPS + $(sumv "$v" 11)))
	rr="1.00" cr="1.00" sr="1.00"
	if [[ $v != baseline ]]; then
		rr="$(ratio "$rps" "$B_RPS") ($(paired "$v" baseline 5))"
		cr="$(ratio "$cpu" "$B_CPU") ($(paired "$v" baseline 9))"
		sr="$(ratio "$rss" "$B_RSS") ($(paired "$v" baseline 10))"
	fi
	say "$(printf '| %s | %.0f (%.0f–%.0f) | %.2f | %.2f | %.1f | %.1f | %d%s | %s | %s | %s |' "$v" "$rps" "$(minv "$v" 5)" "$(maxv "$v" 5)" \
		"$(median "$v" 6)" "$(median "$v" 7)" "$cpu" "$rss" "$errs" "$( ((errs > 0)) && echo ' FLAGGED')" "$rr" "$cr" "$sr")"
done
if [[ " ${VARIANTS[*]} " == *" intake-durable "* ]]; then
	say ""
	say "$(printf 'intake durable/off: req/s %s (rounds %s), CPU/req %s, RSS %s' \
		"$(ratio "$(median intake-durable 5)" "$(median intake-off 5)")" "$(paired intake-durable intake-off 5)" \
		"$(ratio "$(median intake-durable 9)" "$(median intake-off 9)")" "$(ratio "$(median intake-durable 10)" "$(median intake-off 10)")")"
fi
if [[ " ${VARIANTS[*]} " == *" intake-known "* ]]; then
	say "$(printf 'intake known/off: req/s %s (rounds %s), CPU/req %s, RSS %s' \
		"$(ratio "$(median intake-known 5)" "$(median intake-off 5)")" "$(paired intake-known intake-off 5)" \
		"$(ratio "$(median intake-known 9)" "$(median intake-off 9)")" "$(ratio "$(median intake-known 10)" "$(median intake-off 10)")")"
fi
if [[ " ${VARIANTS[*]} " == *" intake-pg "* && " ${VARIANTS[*]} " == *" intake-durable "* ]]; then
	say "$(printf 'intake PostgreSQL/SQLite (both durable): req/s %s (rounds %s), CPU/req %s' \
		"$(ratio "$(median intake-pg 5)" "$(median intake-durable 5)")" "$(paired intake-pg intake-durable 5)" \
		"$(ratio "$(median intake-pg 9)" "$(median intake-durable 9)")")"
fi
if [[ " ${VARIANTS[*]} " == *" intake-pg2 "* && " ${VARIANTS[*]} " == *" intake-pg "* ]]; then
	say "$(printf 'intake on two gateways / one, one PostgreSQL (both on these two cores): req/s %s (rounds %s), CPU/req %s' \
		"$(ratio "$(median intake-pg2 5)" "$(median intake-pg 5)")" "$(paired intake-pg2 intake-pg 5)" \
		"$(ratio "$(median intake-pg2 9)" "$(median intake-pg 9)")")"
fi
if [[ " ${VARIANTS[*]} " == *" order-pg "* && " ${VARIANTS[*]} " == *" order "* ]]; then
	say "$(printf 'order PostgreSQL/SQLite: req/s %s (rounds %s), CPU/req %s' \
		"$(ratio "$(median order-pg 5)" "$(median order 5)")" "$(paired order-pg order 5)" \
		"$(ratio "$(median order-pg 9)" "$(median order 9)")")"
fi
if [[ " ${VARIANTS[*]} " == *" order-off "* && " ${VARIANTS[*]} " == *" order "* ]]; then
	say "$(printf 'order with/without the ledger: req/s %s (rounds %s), CPU/req %s, RSS %s' \
		"$(ratio "$(median order 5)" "$(median order-off 5)")" "$(paired order order-off 5)" \
		"$(ratio "$(median order 9)" "$(median order-off 9)")" "$(ratio "$(median order 10)" "$(median order-off 10)")")"
fi
if [[ -n $COMPARE_BIN ]]; then
	say ""
	say "This build over $COMPARE_BIN (medians; per-round paired range):"
	for v in "${VARIANTS[@]}"; do
		[[ $v == *@compare ]] || [[ $v == baseline ]] && continue
		say "$(printf '  %-15s req/s %s (%s), CPU/req %s (%s), RSS %s' "$v" \
			"$(ratio "$(median "$v" 5)" "$(median "$v@compare" 5)")" "$(paired "$v" "$v@compare" 5)" \
			"$(ratio "$(median "$v" 9)" "$(median "$v@compare" 9)")" "$(paired "$v" "$v@compare" 9)" \
			"$(ratio "$(median "$v" 10)" "$(median "$v@compare" 10)")")"
	done
	for pair in "intake-durable intake-off" "intake-known intake-off"; do
		read -r a b <<<"$pair"
		[[ " ${VARIANTS[*]} " == *" $a@compare "* ]] || continue
		say "$(printf '  %s/%s: this build %s (%s), the compared one %s (%s)' "$a" "$b" \
			"$(ratio "$(median "$a" 5)" "$(median "$b" 5)")" "$(paired "$a" "$b" 5)" \
			"$(ratio "$(median "$a@compare" 5)" "$(median "$b@compare" 5)")" "$(paired "$a@compare" "$b@compare" 5)")"
	done
fi
say ""
say "The fake endpoint's own CPU per request (median µs): $(for v in "${VARIANTS[@]}"; do printf '%s %.1f  ' "$v" "$(median "$v" 12)"; done)"
say "wrk's own CPU per request (median µs):               $(for v in "${VARIANTS[@]}"; do printf '%s %.1f  ' "$v" "$(median "$v" 15)"; done)"

# ---- targets --------------------------------------------------------------------
verdict() { awk -v x="$1" -v op="$2" -v t="$3" 'BEGIN {if (x !~ /^[0-9.]+$/) print "n/a"; else if ((op == ">=" && x + 0 >= t) || (op == "<=" && x + 0 <= t)) print "MET"; else print "MISSED"}'; }
O_RR=$(ratio "$(median order 5)" "$B_RPS")
O_CR=$(ratio "$(median order 9)" "$B_CPU")
O_SR=$(ratio "$(median order 10)" "$B_RSS")
say ""
say "Targets (issue #5)"
ledger_note="storage off: the ledger is not in the gateway yet"
[[ $CFG_MAIN == "$CFG_DURABLE" ]] && ledger_note="with the ledger on"
say "  order req/s ≥ 0.8× plain reverse_proxy ($ledger_note): $O_RR  $(verdict "$O_RR" '>=' 0.8)"
say "  Caddy CPU per order ≤ 1.25× the plain hop's:   $O_CR  $(verdict "$O_CR" '<=' 1.25)"
say "  RSS under order load ≤ 1.3× plain Caddy's:     $O_SR  $(verdict "$O_SR" '<=' 1.3)"
if [[ " ${VARIANTS[*]} " == *" peer "* ]]; then
	P_RPS=$(median peer 5) P_CPU=$(median peer 9)
	O_PR=$(ratio "$(median order 5)" "$P_RPS")
	say "  (issue #13) order req/s ≥ 0.95× plain reverse_proxy: $O_RR  $(verdict "$O_RR" '>=' 0.95)"
	say "  (issue #13) order req/s ≥ 0.9× the hand-written peer ($(printf '%.0f' "$P_RPS") req/s, $(printf '%.1f' "$P_CPU") µs of CPU each): $O_PR ($(paired order peer 5))  $(verdict "$O_PR" '>=' 0.9)"
	say "  (issue #13) Caddy CPU per order ≤ 1.1× the plain hop's: $O_CR  $(verdict "$O_CR" '<=' 1.1)"
fi
if [[ " ${VARIANTS[*]} " == *" order-v3 "* && " ${VARIANTS[*]} " == *" v3-floor "* ]]; then
	V3_RR=$(ratio "$(median order-v3 5)" "$(median v3-floor 5)")
	say "  (issue #9) APIv3 orders ≥ 0.8× the floor of two RSA signatures and one verification per order,"
	say "    measured in the same rounds ($(printf '%.0f' "$(median v3-floor 5)") orders/s): $V3_RR ($(paired order-v3 v3-floor 5))  $(verdict "$V3_RR" '>=' 0.8)"
	# The same machine runs wrk and the fake endpoint: with every core busy,
	# the ratio cannot exceed the floor's CPU per order over the machine's.
	V3_MACHINE=$(awk -v a="$(median order-v3 9)" -v b="$(median order-v3 12)" -v c="$(median order-v3 15)" 'BEGIN {printf "%.0f", a + b + c}')
	say "    (per order: Caddy $(printf '%.0f' "$(median order-v3 9)") + fake endpoint $(printf '%.0f' "$(median order-v3 12)") + wrk $(printf '%.0f' "$(median order-v3 15)") = $V3_MACHINE µs of CPU, the floor $(printf '%.0f' "$(median v3-floor 9)"): at most $(ratio "$(median v3-floor 9)" "$V3_MACHINE") on these cores; Caddy's CPU per order over the floor's: $(ratio "$(median order-v3 9)" "$(median v3-floor 9)"))"
fi
if [[ " ${VARIANTS[*]} " == *" intake-pg "* && " ${VARIANTS[*]} " == *" intake-durable "* ]]; then
	P_RR=$(ratio "$(median intake-pg 5)" "$(median intake-durable 5)")
	say "  (issue #11) durable intake on PostgreSQL ≥ 0.5× on SQLite: $P_RR ($(paired intake-pg intake-durable 5))  $(verdict "$P_RR" '>=' 0.5)"
fi
if ((DURABLE)) && [[ " ${VARIANTS[*]} " != *" intake-durable "* ]]; then
	say "  durable intake ≥ 0.5× intake with storage off: not measured in this run (ONLY)"
elif ((DURABLE)); then
	D_RR=$(ratio "$(median intake-durable 5)" "$(median intake-off 5)")
	say "  durable intake ≥ 0.5× intake with storage off: $D_RR ($(paired intake-durable intake-off 5))  $(verdict "$D_RR" '>=' 0.5)"
	say "  (issue #13) durable intake ≥ 0.8× intake with storage off: $D_RR  $(verdict "$D_RR" '>=' 0.8)"
	if [[ " ${VARIANTS[*]} " == *" intake-known "* ]]; then
		K_RR=$(ratio "$(median intake-known 5)" "$(median intake-off 5)")
		say "    (for information, not the target's comparison: with the orders known to the ledger, each"
		say "    notification also cross-checked and its order set PAID, which storage off cannot do: $K_RR ($(paired intake-known intake-off 5)))"
	fi
else
	say "  durable intake ≥ 0.5× intake with storage off: NOT MEASURED (the gateway has no durable storage yet; only storage off was measured)"
fi
if ((TOTAL_ERRORS == 0)); then
	say "  no error responses in any run: MET (0 non-2xx/socket errors in $((${#VARIANTS[@]} * ROUNDS)) runs)"
else
	say "  no error responses in any run: MISSED ($TOTAL_ERRORS non-2xx/socket errors; see bench/out/logs/*.wrk.txt)"
fi
((TOTAL_LOGERR == 0)) || say "  note: Caddy logged $TOTAL_LOGERR error-level lines (bench/out/logs/*.caddy.log)"
((TOTAL_WRAPS == 0)) || say "  note: notification files wrapped $TOTAL_WRAPS times (duplicates were sent); raise NOTIFY_DOCS"
say "  (micro-benchmark targets: go test ./bench -run '^\$' -bench . -benchmem)"
say ""
say "load average during the runs (1 min): $(awk -F'\t' 'NR > 1 {print $14}' "$RESULTS" | sort -g | awk '{a[NR] = $1} END {printf "%s–%s, median %s", a[1], a[NR], a[int((NR + 1) / 2)]}')"
say "raw results: bench/out/results.tsv; wrk and Caddy logs: bench/out/logs/"

# ---- profiles (PROFILE=1) ---------------------------------------------------------
if [[ $PROFILE == 1 ]]; then
	echo
	echo "profiling Caddy for ${PROFILE_SECONDS}s under each load"
	for v in "${VARIANTS[@]}"; do
		[[ $v == *@compare || $v == peer || $v == v3-floor ]] && continue
		kind=$(variant_kind "$v") cfg=$(variant_cfg "$v")
		start_caddy "$cfg" "$OUT/logs/profile-$v.caddy.log" "$( [[ $v == intake-known ]] && echo seeded)"
		curl -s --max-time $((PROFILE_SECONDS + 30)) -o "$OUT/profile-$v.pprof" \
			"http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$PROFILE_SECONDS" &
		PROF_PID=$!
		read -r -a args <<<"$(wrk_args "$kind" "P$(date +%s)" notify)"
		wrk_run "$kind" "${args[0]}" $((PROFILE_SECONDS + 2)) "${args[@]:1}" >"$OUT/logs/profile-$v.wrk.txt" 2>&1 || true
		wait "$PROF_PID" || true
		PROF_PID=
		stop_caddy
		go tool pprof -top -nodecount=45 "$OUT/caddy" "$OUT/profile-$v.pprof" >"$OUT/profile-$v.top.txt" 2>/dev/null || true
		echo "  bench/out/profile-$v.pprof, top functions in bench/out/profile-$v.top.txt"
	done
fi

# ---- system calls (SYSCALLS=1) -------------------------------------------------
# strace -c on Caddy under each load, after the measured runs (strace slows
# Caddy a lot: these runs are for counting, never for the figures above).
# Counts per request show what the ledger asks of the kernel (pwrite64 for
# WAL frames and checkpoints, fsync per group commit, fcntl for locks).
if [[ ${SYSCALLS:-0} == 1 ]]; then
	command -v strace >/dev/null || die "SYSCALLS=1 needs strace (apt-get install strace)"
	echo
	echo "counting Caddy's system calls for ${PROFILE_SECONDS}s under each load (strace -c)"
	for v in "${VARIANTS[@]}"; do
		[[ $v == *@compare || $v == peer || $v == v3-floor ]] && continue
		kind=$(variant_kind "$v") cfg=$(variant_cfg "$v")
		start_caddy "$cfg" "$OUT/logs/syscalls-$v.caddy.log" "$( [[ $v == intake-known ]] && echo seeded)"
		timeout --signal=INT $((PROFILE_SECONDS + 1)) strace -c -f -p "$CADDY_PID" -o "$OUT/syscalls-$v.txt" 2>/dev/null &
		PROF_PID=$!
		read -r -a args <<<"$(wrk_args "$kind" "S$(date +%s)" notify)"
		wrk_run "$kind" "${args[0]}" "$PROFILE_SECONDS" "${args[@]:1}" >"$OUT/logs/syscalls-$v.wrk.txt" 2>&1 || true
		wait "$PROF_PID" || true
		PROF_PID=
		stop_caddy
		reqs=$(grep '^BENCH ' "$OUT/logs/syscalls-$v.wrk.txt" | tail -1 | sed -n 's/.*requests=\([0-9]*\).*/\1/p')
		echo "  $v: ${reqs:-0} requests; calls per request:" \
			"$(awk -v n="${reqs:-0}" '$NF ~ /^(pwrite64|fsync|fdatasync|fcntl|pread64|write|read|futex)$/ && n > 0 {printf "%s %.2f  ", $NF, $4 / n}' "$OUT/syscalls-$v.txt")" \
			"(bench/out/syscalls-$v.txt)"
	done
fi
