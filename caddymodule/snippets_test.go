package caddymodule_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// The README's signature checks and deduplication, in the backend
// languages: each check line below appears in README.md exactly as written
// (TestREADMESignatureSnippets fails otherwise), wrapped in a program that
// takes the body file, the timestamp, the signature, the Wxpay-Event-Id
// header (which the check must not trust) and the file of the ids already
// fulfilled. It prints "fulfil <id>" or "duplicate <id>", and exits 3 when
// the check refuses the delivery (a crash after the check, such as a body
// that does not parse, is not a refusal).
var snippetCheckLines = map[string]string{
	"python3": `    if not hmac.compare_digest(want, request.headers.get("Wxpay-Signature", "")) \
            or not ts.isdigit() or abs(time.time() - int(ts)) > 300:
        abort(401)`,
	"node": `if (sig.length !== want.length || !crypto.timingSafeEqual(sig, want) ||
      !/^\d+$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) return res.sendStatus(401);`,
	"php": `if (!hash_equals($want, $sig) || !ctype_digit($ts) || abs(time() - (int)$ts) > 300) { http_response_code(401); exit; }`,
}

var snippetChecks = map[string][]string{
	"python3": {"-c", `
import hashlib, hmac, json, os, sys, time
body = open(sys.argv[1], "rb").read()
ts, sig, header_id, seen_file = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
want = "v1=" + hmac.new(os.environ["WXPAY_UPSTREAM_SECRET"].encode(),
                        ts.encode() + b"." + body, hashlib.sha256).hexdigest()
class request:
    headers = {"Wxpay-Signature": sig}
def abort(code):
    sys.exit(3)
def check():
` + snippetCheckLines["python3"] + `
check()
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
const res = { sendStatus: (code) => process.exit(3) };
const sig = Buffer.from(sigText);
const want = Buffer.from('v1=' + crypto.createHmac('sha256', process.env.WXPAY_UPSTREAM_SECRET)
  .update(ts + '.').update(body).digest('hex'));
(() => {
  ` + snippetCheckLines["node"] + `
  const event = JSON.parse(body);
  const seen = fs.existsSync(seenFile) ? fs.readFileSync(seenFile, 'utf8').split('\n') : [];
  if (seen.includes(event.id)) {  // the body's id, signed: never the Wxpay-Event-Id header
    console.log('duplicate', event.id);
  } else {
    fs.appendFileSync(seenFile, event.id + '\n');
    console.log('fulfil', event.id);
  }
})();
`},
	"php": {"-r", `
namespace check; // so that the check's http_response_code is this one
function http_response_code($code) { exit(3); }
$body = file_get_contents($argv[1]);
[$ts, $sig, $headerId, $seenFile] = [$argv[2], $argv[3], $argv[4], $argv[5]];
$want = 'v1=' . hash_hmac('sha256', $ts . '.' . $body, getenv('WXPAY_UPSTREAM_SECRET'));
` + snippetCheckLines["php"] + `
$event = json_decode($body, true);
$seen = file_exists($seenFile) ? explode("\n", file_get_contents($seenFile)) : [];
if (in_array($event['id'], $seen, true)) {  // the body's id, signed: never the Wxpay-Event-Id header
    echo "duplicate ", $event['id'], "\n";
} else {
    file_put_contents($seenFile, $event['id'] . "\n", FILE_APPEND);
    echo "fulfil ", $event['id'], "\n";
}
`},
}

// TestREADMESignatureSnippets runs the README's checks against a real
// delivery (fulfilled), the same delivery sent again with another
// Wxpay-Event-Id header (a duplicate), and against what must be refused:
// a tampered body, a timestamp older than 300 s correctly signed, a
// captured delivery whose signed string is split at another dot (part of
// the body moved into the timestamp header: the HMAC still matches, the
// timestamp is no number), and no signature.
func TestREADMESignatureSnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for lang, line := range snippetCheckLines {
		if !strings.Contains(string(readme), line) {
			t.Errorf("README.md does not have the %s check the test runs:\n%s", lang, line)
		}
	}
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
	ts, sig := d.Header.Get("Wxpay-Timestamp"), d.Header.Get("Wxpay-Signature")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	good := write("good.json", d.Body)
	tampered := strings.Replace(string(d.Body), `"total_fee":42`, `"total_fee":1`, 1)
	if tampered == string(d.Body) {
		t.Fatal("could not tamper with the body")
	}
	bad := write("bad.json", []byte(tampered))
	// Signed as the gateway signs (HMAC-SHA256 of "<ts>.<body>", hex,
	// "v1=" in front), computed here with crypto/hmac, ten minutes ago.
	oldTS := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(oldTS + "." + string(d.Body)))
	oldSig := "v1=" + hex.EncodeToString(mac.Sum(nil))
	// The split: "<ts>.<body>" read as "<ts>.<body[:k]>" "." "<body[k+1:]>"
	// at the body's first dot.
	k := strings.IndexByte(string(d.Body), '.')
	if k < 0 {
		t.Fatal("the body has no dot to split at")
	}
	splitTS, splitBody := ts+"."+string(d.Body[:k]), write("split.json", d.Body[k+1:])
	var ev struct{ ID string }
	if err := json.Unmarshal(d.Body, &ev); err != nil || ev.ID == "" || ev.ID != d.Header.Get("Wxpay-Event-Id") {
		t.Fatalf("the delivery's id %q, header %q: %v", ev.ID, d.Header.Get("Wxpay-Event-Id"), err)
	}
	for interp, args := range snippetChecks {
		t.Run(interp, func(t *testing.T) {
			path := requireTool(t, interp)
			seen := filepath.Join(t.TempDir(), "seen")
			run := func(file, ts, sig, headerID string) (string, error) {
				cmd := exec.Command(path, append(args, file, ts, sig, headerID, seen)...)
				cmd.Env = append(os.Environ(), "WXPAY_UPSTREAM_SECRET="+testSecret)
				outp, err := cmd.CombinedOutput()
				if err != nil && len(outp) > 0 {
					t.Logf("%s: %s", interp, outp)
				}
				return strings.TrimSpace(string(outp)), err
			}
			id := d.Header.Get("Wxpay-Event-Id")
			for _, refused := range []struct{ what, file, ts, sig string }{
				{"a tampered body", bad, ts, sig},
				{"a timestamp ten minutes old", good, oldTS, oldSig},
				{"the signed string split at another dot", splitBody, splitTS, sig},
				{"no signature", good, ts, ""},
			} {
				out, err := run(refused.file, refused.ts, refused.sig, id)
				if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 3 {
					t.Errorf("%s is not refused by the check: %q, %v", refused.what, out, err)
				}
			}
			if out, err := run(good, ts, sig, id); err != nil || out != "fulfil "+ev.ID {
				t.Errorf("the real delivery: %q, %v", out, err)
			}
			// The same delivery captured and sent again with another id
			// header: it verifies (the header is not signed), and is a
			// duplicate.
			if out, err := run(good, ts, sig, "evt_forged0000000000000000000000"); err != nil || out != "duplicate "+ev.ID {
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
