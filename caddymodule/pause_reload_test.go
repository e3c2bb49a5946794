package caddymodule_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// Delivery is paused; a reload names the same ledger by another spelling
// (here a symlinked directory; with PostgreSQL, a DSN whose {file.*}
// password was rotated), which opens it anew: the reload must not resume
// deliveries.
func TestReloadKeepsPause(t *testing.T) {
	g := startGateway(t, gatewayOptions{admin: true})
	if st, body := g.adminDo(t, http.MethodPost, "/wxpay/delivery/pause"); st != 200 {
		t.Fatalf("pause: %d %s", st, body)
	}
	link := filepath.Join(t.TempDir(), "same")
	if err := os.Symlink(g.dir, link); err != nil {
		t.Fatal(err)
	}
	old := "storage sqlite " + filepath.Join(g.dir, "ledger.db")
	cfg := strings.Replace(g.cfg, old, "storage sqlite "+filepath.Join(link, "ledger.db"), 1)
	if cfg == g.cfg {
		t.Fatal("no storage line to change")
	}
	loadCaddyfile(t, cfg)
	_, body := g.adminDo(t, http.MethodGet, "/wxpay/delivery")
	g.placeAndPay(t, "review-pause-1", 15, wxpaysim.PayOptions{})
	time.Sleep(500 * time.Millisecond)
	if n := len(g.backend.got()); n != 0 || !bytes.Contains(body, []byte(`"paused": true`)) {
		t.Fatalf("paused, then reloaded: status %s, and the backend got %d deliveries", bytes.TrimSpace(body), n)
	}
	// Resumed, the event that waited is delivered.
	if st, body := g.adminDo(t, http.MethodPost, "/wxpay/delivery/resume"); st != 200 {
		t.Fatalf("resume: %d %s", st, body)
	}
	waitFor(t, "the delivery after resume", 5*time.Second, func() bool { return len(g.backend.got()) == 1 })
}
