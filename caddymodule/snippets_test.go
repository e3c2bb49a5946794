package caddymodule_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// The README's signature checks, in the backend languages, as the README
// writes them, run against a real delivery, and against a tampered copy.
var snippetChecks = map[string][]string{
	"python3": {"-c", `
import hashlib, hmac, os, sys, time
body = open(sys.argv[1], "rb").read()
ts, sig = sys.argv[2], sys.argv[3]
want = "v1=" + hmac.new(os.environ["WXPAY_UPSTREAM_SECRET"].encode(),
                        ts.encode() + b"." + body, hashlib.sha256).hexdigest()
ok = hmac.compare_digest(want, sig) and ts.isdigit() and abs(time.time() - int(ts)) <= 300
sys.exit(0 if ok else 1)
`},
	"node": {"-e", `
const crypto = require('crypto'), fs = require('fs');
const [body, ts, sigText] = [fs.readFileSync(process.argv[1]), process.argv[2], process.argv[3]];
const sig = Buffer.from(sigText);
const want = Buffer.from('v1=' + crypto.createHmac('sha256', process.env.WXPAY_UPSTREAM_SECRET)
  .update(ts + '.').update(body).digest('hex'));
const ok = sig.length === want.length && crypto.timingSafeEqual(sig, want) &&
  Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
process.exit(ok ? 0 : 1);
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
	for interp, args := range snippetChecks {
		t.Run(interp, func(t *testing.T) {
			path := requireTool(t, interp)
			run := func(file string) error {
				cmd := exec.Command(path, append(args, file, d.Header.Get("Wxpay-Timestamp"), d.Header.Get("Wxpay-Signature"))...)
				cmd.Env = append(os.Environ(), "WXPAY_UPSTREAM_SECRET="+testSecret)
				outp, err := cmd.CombinedOutput()
				if err != nil && len(outp) > 0 {
					t.Logf("%s: %s", interp, outp)
				}
				return err
			}
			if err := run(good); err != nil {
				t.Errorf("the real delivery does not verify: %v", err)
			}
			if err := run(bad); err == nil {
				t.Errorf("a tampered delivery verifies")
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
