package caddymodule_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// The README's signature checks and deduplication, in the backend
// languages, as the README writes them, run against a real delivery, a
// tampered copy, and the same delivery sent again with another
// Wxpay-Event-Id header (a replay within the 300 s window): arguments body
// file, timestamp, signature, the Wxpay-Event-Id header (which the check
// must not trust), and the file of the ids already fulfilled. They print
// "fulfil <id>" or "duplicate <id>", and exit 1 when the signature fails.
var snippetChecks = map[string][]string{
	"python3": {"-c", `
import hashlib, hmac, json, os, sys, time
body = open(sys.argv[1], "rb").read()
ts, sig, header_id, seen_file = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
want = "v1=" + hmac.new(os.environ["WXPAY_UPSTREAM_SECRET"].encode(),
                        ts.encode() + b"." + body, hashlib.sha256).hexdigest()
ok = hmac.compare_digest(want, sig) and ts.isdigit() and abs(time.time() - int(ts)) <= 300
if not ok:
    sys.exit(1)
event = json.loads(body)
seen = open(seen_file).read().split() if os.path.exists(seen_file) else []
if event["id"] in seen:  # the body's id, signed: never the Wxpay-Event-Id header
    print("duplicate", event["id"])
else:
    open(seen_file, "a").write(event["id"] + "\n")
    print("fulfil", event["id"])
`},
	"node": {"-e", `
const crypto = require('crypto'), fs = require('fs');
const [body, ts, sigText, headerId, seenFile] = [fs.readFileSync(process.argv[1]), process.argv[2], process.argv[3], process.argv[4], process.argv[5]];
const sig = Buffer.from(sigText);
const want = Buffer.from('v1=' + crypto.createHmac('sha256', process.env.WXPAY_UPSTREAM_SECRET)
  .update(ts + '.').update(body).digest('hex'));
const ok = sig.length === want.length && crypto.timingSafeEqual(sig, want) &&
  Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
if (!ok) process.exit(1);
const event = JSON.parse(body);
const seen = fs.existsSync(seenFile) ? fs.readFileSync(seenFile, 'utf8').split('\n') : [];
if (seen.includes(event.id)) {  // the body's id, signed: never the Wxpay-Event-Id header
  console.log('duplicate', event.id);
} else {
  fs.appendFileSync(seenFile, event.id + '\n');
  console.log('fulfil', event.id);
}
`},
}

func TestREADMESignatureSnippets(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "snip1", "total_fee": 42, "body": "中文", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
	d := g.backend.got()[0]
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.json"), filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, d.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(d.Body), `"total_fee":42`, `"total_fee":1`, 1)
	if tampered == string(d.Body) {
		t.Fatal("could not tamper with the body")
	}
	if err := os.WriteFile(bad, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	var ev struct{ ID string }
	if err := json.Unmarshal(d.Body, &ev); err != nil || ev.ID == "" || ev.ID != d.Header.Get("Wxpay-Event-Id") {
		t.Fatalf("the delivery's id %q, header %q: %v", ev.ID, d.Header.Get("Wxpay-Event-Id"), err)
	}
	for interp, args := range snippetChecks {
		t.Run(interp, func(t *testing.T) {
			path := requireTool(t, interp)
			seen := filepath.Join(t.TempDir(), "seen")
			run := func(file, headerID string) (string, error) {
				cmd := exec.Command(path, append(args, file, d.Header.Get("Wxpay-Timestamp"), d.Header.Get("Wxpay-Signature"), headerID, seen)...)
				cmd.Env = append(os.Environ(), "WXPAY_UPSTREAM_SECRET="+testSecret)
				outp, err := cmd.CombinedOutput()
				if err != nil && len(outp) > 0 {
					t.Logf("%s: %s", interp, outp)
				}
				return strings.TrimSpace(string(outp)), err
			}
			if _, err := run(bad, d.Header.Get("Wxpay-Event-Id")); err == nil {
				t.Errorf("a tampered delivery verifies")
			}
			if out, err := run(good, d.Header.Get("Wxpay-Event-Id")); err != nil || out != "fulfil "+ev.ID {
				t.Errorf("the real delivery: %q, %v", out, err)
			}
			// The same delivery captured and sent again with another id
			// header: it verifies (the header is not signed), and is a
			// duplicate.
			if out, err := run(good, "evt_forged0000000000000000000000"); err != nil || out != "duplicate "+ev.ID {
				t.Errorf("the replay with another Wxpay-Event-Id: %q, %v", out, err)
			}
		})
	}
}

// requireTool returns the path of the command name, and skips t when it is
// not installed, unless WXPAY_TEST_REQUIRE_TOOLS=1 (set by .ci/run, which
// installs it): then a missing tool fails the test instead of hiding it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("WXPAY_TEST_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is not installed, and WXPAY_TEST_REQUIRE_TOOLS=1", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return path
}
