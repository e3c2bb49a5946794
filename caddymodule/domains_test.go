package caddymodule_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// At start the gateway warns, naming the option and the host, of each
// notify_url and pay directory of a merchant on WeChat's own endpoint whose
// host is not a site of this Caddy with automatic HTTPS, and of no other;
// mp_verify serves WeChat's domain-verification file at the site's root.
func TestDomainChecksAndMPVerify(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "caddy.log")
	verify := filepath.Join(dir, "MP_verify_Ab12Cd34.txt")
	if err := os.WriteFile(verify, []byte("Ab12Cd34\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WXPAY_TEST_API_KEY", testKey)
	httpsPort, httpPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(caddyfileTop, "off", filepath.Join(dir, "data"), logFile) + fmt.Sprintf(`	local_certs
	skip_install_trust
	https_port %[1]d
	http_port %[2]d
	wxpay {
		merchant prod {
			mch_id      1900000109
			app_id      %[3]s
			api_key     {env.WXPAY_TEST_API_KEY}
			notify_url  https://pay.example.com/wxpay/notify
			pay_directory https://pay.example.com/shop/ https://shop.example.com/pay/
			pay_directory https://plain.example.com/pay/
		}
		upstream http://127.0.0.1:1/events {
			secret %[4]s
		}
		api_token %[5]s
		storage sqlite %[6]s
	}
}

pay.example.com {
	bind 127.0.0.1
	# The certificate (from Caddy's local CA) at the first handshake, not
	# in the background during the load: Caddy's own start has a data
	# race between its TLS app starting and a certificate obtained for
	# the http app that started first (the race detector caught it).
	tls internal {
		on_demand
	}
	wxpay prod {
		mp_verify %[7]s
	}
}

http://plain.example.com {
	bind 127.0.0.1
	respond "plain"
}
`, httpsPort, httpPort, testAppID, testSecret, testToken, filepath.Join(dir, "ledger.db"), verify)
	loadCaddyfile(t, cfg)
	t.Cleanup(func() { _ = caddy.Stop() })

	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"merchant":"prod"`) {
			warnings = append(warnings, line)
		}
	}
	has := func(parts ...string) bool {
		for _, w := range warnings {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(w, p)
			}
			if all {
				return true
			}
		}
		return false
	}
	if !has("pay_directory https://shop.example.com/pay/", "host shop.example.com is not a site of this Caddy") {
		t.Errorf("no warning for the pay directory on a host Caddy does not serve: %v", warnings)
	}
	if !has("pay_directory https://plain.example.com/pay/", "not over automatic HTTPS") {
		t.Errorf("no warning for the pay directory on a plain-http site: %v", warnings)
	}
	if has("pay.example.com is not") || has("notify_url") {
		t.Errorf("a warning for a host Caddy serves with automatic HTTPS: %v", warnings)
	}

	// WeChat fetches the verification file at the domain's root.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		ServerName: "pay.example.com", InsecureSkipVerify: true, // Caddy's local CA; only the file is under test
	}}}
	try := func(path string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d%s", httpsPort, path), nil)
		req.Host = "pay.example.com"
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	// Caddy obtains the site's certificate (from its local CA) at the
	// first handshake.
	waitFor(t, "pay.example.com's certificate", 30*time.Second, func() bool {
		_, _, err := try("/")
		return err == nil
	})
	get := func(path string) (int, string) {
		status, body, err := try(path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return status, body
	}
	if status, body := get("/MP_verify_Ab12Cd34.txt"); status != 200 || body != "Ab12Cd34" {
		t.Fatalf("the verification file: %d %q", status, body)
	}
	// Another name is not this file (the site has nothing else: Caddy's
	// empty answer).
	if _, body := get("/MP_verify_Other.txt"); body != "" {
		t.Fatalf("another verification file was served: %q", body)
	}
}
