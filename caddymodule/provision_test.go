package caddymodule_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// Provisioning refuses bad configuration with a message naming the field,
// and never with the secret in it.
func TestProvisioningRefuses(t *testing.T) {
	dir := t.TempDir()
	merchant := func(lines string) string {
		return fmt.Sprintf(`{
	admin off
	storage file_system %s
	wxpay {
		merchant default {
%s
		}
		upstream http://127.0.0.1:9/events {
			secret whsec-0123456789abcdef
		}
		api_token tok-0123456789abcdef
	}
}
http://127.0.0.1:%d {
	wxpay
}
`, filepath.Join(dir, "data"), lines, freePort(t))
	}
	const (
		mch    = "mch_id 10000100"
		app    = "app_id wxd930ea5d5a258f4f"
		key    = "api_key 192006250b4c09247ec02edce69f6a2d"
		notify = "notify_url https://pay.example.com/wxpay/notify"
		v3key  = "api_v3_key caddywxpaydemoapiv3key0123456789"
		v3priv = "private_key ../demo/v3/apiclient_key.pem"
		v3cert = "merchant_cert ../demo/v3/apiclient_cert.pem"
		v3pub  = "wechatpay_public_key PUB_KEY_ID_0110000100202612020000000000000001 ../demo/v3/pub_key.pem"
	)
	all := func(lines ...string) string { return merchant(strings.Join(lines, "\n")) }
	t.Setenv("WXPAY_EMPTY_FOR_TEST", "")
	tests := []struct {
		name string
		cfg  string
		says string
	}{
		{"missing mch_id", all(app, key, notify), "mch_id is required"},
		{"mch_id from empty env", all("mch_id {env.WXPAY_EMPTY_FOR_TEST}", app, key, notify), "mch_id is required"},
		{"missing app_id", all(mch, key, notify), "app_id is required"},
		{"missing key", all(mch, app, notify), "api_key is required"},
		{"short key", all(mch, app, "api_key 192006250b4c09247ec02edce69f6a2", notify), "api_key (given inline): api key has 31 characters"},
		{"key from missing file", all(mch, app, "api_key {file./nonexistent/wxpay.key}", notify), "api_key from {file./nonexistent/wxpay.key}"},
		{"unknown sign type", all(mch, app, key, notify, "sign_type SHA1"), "sign_type"},
		{"notify_sign_type without sign_type", all(mch, app, key, notify, "notify_sign_type HMAC-SHA256"), "notify_sign_type HMAC-SHA256 needs sign_type HMAC-SHA256"},
		{"notify_sign_type MD5", all(mch, app, key, notify, "sign_type HMAC-SHA256", "notify_sign_type MD5"), `notify_sign_type "MD5": want HMAC-SHA256`},
		{"missing notify_url", all(mch, app, key), "notify_url is required"},
		{"http notify_url", all(mch, app, key, "notify_url http://pay.example.com/wxpay/notify"), "notify_url \"http://pay.example.com/wxpay/notify\" must be https"},
		{"http notify_url to WeChat even with opt-out", all(mch, app, key, "notify_url http://pay.example.com/wxpay/notify", "insecure_notify_url"), "loopback"},
		{"notify_url with query", all(mch, app, key, "notify_url https://pay.example.com/notify?a=1"), "query string"},
		{"http endpoint off loopback", all(mch, app, key, notify, "endpoint http://api.mch.weixin.qq.com"), "endpoint"},
		// APIv3.
		{"v3 without api_v3_key", all(mch, app, notify, "api_version v3", v3priv, v3cert, v3pub), "api_v3_key is required"},
		{"v3 key of 31 bytes", all(mch, app, notify, "api_version v3", "api_v3_key caddywxpaydemoapiv3key012345678", v3priv, v3cert, v3pub), "api_v3_key (given inline)"},
		{"v3 without private_key", all(mch, app, notify, "api_version v3", v3key, v3cert, v3pub), "private_key is required"},
		{"v3 private key that does not parse", all(mch, app, notify, "api_version v3", v3key, "private_key ../demo/v3/pub_key.pem", v3cert, v3pub), "private_key"},
		{"v3 private key of 1024 bits", all(mch, app, notify, "api_version v3", v3key, "private_key ../wxpay/wxpayv3/testdata/small_key.pem", v3cert, v3pub), "2048"},
		{"v3 without a serial", all(mch, app, notify, "api_version v3", v3key, v3priv, v3pub), "mch_serial"},
		{"v3 serial that is not hexadecimal", all(mch, app, notify, "api_version v3", v3key, v3priv, "mch_serial 5B65-80FA", v3pub), `mch_serial "5B65-80FA" is not a certificate serial`},
		{"v3 serial not the certificate's", all(mch, app, notify, "api_version v3", v3key, v3priv, v3cert, "mch_serial 1234ABCD", v3pub), "does not match merchant_cert"},
		{"v3 certificate of another key", all(mch, app, notify, "api_version v3", v3key, v3priv, "merchant_cert ../demo/v3/sim_platform_cert.pem", v3pub), "not the certificate of private_key"},
		{"v3 with nothing to verify WeChat", all(mch, app, notify, "api_version v3", v3key, v3priv, v3cert, "platform_certificates off"), "needs a way to verify WeChat"},
		{"v3 public key id without its prefix", all(mch, app, notify, "api_version v3", v3key, v3priv, v3cert, "wechatpay_public_key 0114232134912410000000000000 ../demo/v3/pub_key.pem"), "PUB_KEY_ID_"},
		{"v3 options on a v2 merchant", all(mch, app, key, notify, v3key), "set api_version v3"},
		{"unknown api_version", all(mch, app, key, notify, "api_version v4"), "api_version \"v4\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tryLoadCaddyfile(tt.cfg)
			if err == nil {
				_ = caddy.Stop()
				t.Fatal("config loaded")
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error %q does not say %q", err, tt.says)
			}
			if strings.Contains(err.Error(), "192006250b4c09247ec02edce69f6a2") || strings.Contains(err.Error(), "caddywxpaydemoapiv3key") {
				t.Fatalf("error reveals the key: %v", err)
			}
		})
	}

	t.Run("order route without api_token", func(t *testing.T) {
		cfg := fmt.Sprintf(`{
	admin off
	storage file_system %s
	wxpay {
		merchant {
			%s
			%s
			%s
			%s
		}
		upstream http://127.0.0.1:9/events {
			secret whsec-0123456789abcdef
		}
	}
}
http://127.0.0.1:%d {
	wxpay
}
`, filepath.Join(dir, "data"), mch, app, key, notify, freePort(t))
		err := tryLoadCaddyfile(cfg)
		if err == nil || !strings.Contains(err.Error(), "api_token") {
			_ = caddy.Stop()
			t.Fatalf("err = %v, want one naming api_token", err)
		}
		// notify_only needs no token.
		ok := strings.Replace(cfg, "\twxpay\n}", "\twxpay {\n\t\tnotify_only\n\t}\n}", 1)
		if err := tryLoadCaddyfile(ok); err != nil {
			t.Fatalf("notify_only without api_token: %v", err)
		}
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
	})

	// Key material reaches no error: a key given some other way than PEM
	// or a file (base64 DER, inline or from a placeholder), a Caddyfile
	// line with a secret and a stray argument (Caddyfile's own argument
	// error quotes the token it stopped at).
	t.Run("key material never in an error", func(t *testing.T) {
		pemKey, err := os.ReadFile("../demo/v3/apiclient_key.pem")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(pemKey)), "\n")
		der := strings.Join(lines[1:len(lines)-1], "") // the key, base64 DER
		t.Setenv("WXPAY_TEST_DERKEY", der)
		cert, _ := filepath.Abs("../demo/v3/apiclient_cert.pem")
		for _, tc := range []struct {
			name, cfg, says, secret string
		}{
			{"private_key from env, not PEM", all(mch, app, notify, "api_version v3", v3key, "private_key {env.WXPAY_TEST_DERKEY}", v3cert, v3pub),
				"private_key: {env.WXPAY_TEST_DERKEY} resolves to neither PEM", der[:40]},
			{"private_key inline, not PEM", all(mch, app, notify, "api_version v3", v3key, "private_key "+der, v3cert, v3pub),
				"not shown", der[:40]},
			{"client_key from env, not PEM", all(mch, app, key, notify, "client_cert "+cert+" {env.WXPAY_TEST_DERKEY}"),
				"client_key: {env.WXPAY_TEST_DERKEY} resolves to neither PEM", der[:40]},
			{"api_token with a stray argument", strings.Replace(all(mch, app, key, notify), "api_token tok-0123456789abcdef", "api_token tok-0123456789abcdef extra", 1),
				"api_token takes one value", "tok-0123456789abcdef"},
			{"upstream secret with a stray argument", strings.Replace(all(mch, app, key, notify), "secret whsec-0123456789abcdef", "secret whsec-0123456789abcdef extra", 1),
				"secret takes one value", "whsec-0123456789abcdef"},
			{"api_key with a stray argument", all(mch, app, key+" extra", notify), "api_key takes one value", "192006250b4c09247ec02edce69f6a2d"},
			{"api_v3_key with a stray argument", all(mch, app, notify, "api_version v3", v3key+" extra", v3priv, v3cert, v3pub),
				"api_v3_key takes one value", "caddywxpaydemoapiv3key"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tryLoadCaddyfile(tc.cfg)
				if err == nil {
					_ = caddy.Stop()
					t.Fatal("config loaded")
				}
				if strings.Contains(err.Error(), tc.secret) {
					t.Fatalf("the error shows the secret: %v", err)
				}
				if !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("error %q does not say %q", err, tc.says)
				}
			})
		}
		// The client certificate's PEM from placeholders, as private_key's.
		keyAbs, _ := filepath.Abs("../demo/v3/apiclient_key.pem")
		if err := tryLoadCaddyfile(all(mch, app, key, notify, "client_cert {file."+cert+"} {file."+keyAbs+"}")); err != nil {
			t.Fatalf("client_cert from placeholders: %v", err)
		}
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("base_path of the whole site", func(t *testing.T) {
		for _, bp := range []string{"/", "//"} {
			cfg := strings.Replace(all(mch, app, key, notify), "\twxpay\n}", "\twxpay {\n\t\tbase_path "+bp+"\n\t}\n}", 1)
			err := tryLoadCaddyfile(cfg)
			if err == nil {
				_ = caddy.Stop()
				t.Fatalf("base_path %s loaded", bp)
			}
			if !strings.Contains(err.Error(), "base_path / would take every path") {
				t.Fatalf("base_path %s: %v", bp, err)
			}
		}
	})

	t.Run("secrets from env and file", func(t *testing.T) {
		keyFile := filepath.Join(dir, "key")
		if err := os.WriteFile(keyFile, []byte("192006250b4c09247ec02edce69f6a2d\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("WXPAY_TEST_MCH", "10000100")
		cfg := all("mch_id {env.WXPAY_TEST_MCH}", app, "api_key {file."+keyFile+"}", notify)
		if err := tryLoadCaddyfile(cfg); err != nil {
			t.Fatalf("placeholders: %v", err)
		}
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		// APIv3: the private key's PEM itself from a {file.*} placeholder,
		// the serial given (in openssl's padded form) and checked against
		// the certificate.
		abs, err := filepath.Abs("../demo/v3/apiclient_key.pem")
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("WXPAY_TEST_V3KEY", "caddywxpaydemoapiv3key0123456789")
		cfg = all(mch, app, notify, "api_version v3", "api_v3_key {env.WXPAY_TEST_V3KEY}", "private_key {file."+abs+"}",
			v3cert, "mch_serial 5b6580fa62f45492af3527fb9b8dcac26bd6b458", v3pub)
		if err := tryLoadCaddyfile(cfg); err != nil {
			t.Fatalf("v3 placeholders: %v", err)
		}
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// The simulator signs only with keys given to it, and never with a key a
// merchant uses with WeChat itself (on a staging gateway that shares a
// production key, it would mint notifications production accepts).
func TestSimulatorRefusesRealKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := func(endpoint, simMerchant string) string {
		return fmt.Sprintf(`{
	admin off
	storage file_system %s
	wxpay {
		merchant shop {
			mch_id      1900000109
			app_id      wxd930ea5d5a258f4f
			api_key     {env.WXPAY_TEST_REAL_KEY}
			notify_url  https://pay.example.com/wxpay/notify
			%s
		}
		storage sqlite %s
	}
}
http://127.0.0.1:%d {
	wxpay_simulator {
		%s
	}
}
`, filepath.Join(dir, "data"), endpoint, filepath.Join(dir, "ledger.db"), freePort(t), simMerchant)
	}
	const real = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
	t.Setenv("WXPAY_TEST_REAL_KEY", real)
	tests := []struct {
		name, endpoint, merchant, says string
	}{
		{"no merchant lines", "", "time_scale 1", "no merchants"},
		{"the key of a merchant on WeChat's default host", "", "merchant 1900000109 " + real + " wxd930ea5d5a258f4f", "never sign with a real key"},
		{"the key of a merchant on WeChat's host, spelt otherwise", "endpoint https://API.MCH.WEIXIN.QQ.COM.", "merchant 1 {env.WXPAY_TEST_REAL_KEY} wx1", "never sign with a real key"},
		{"the same key for a merchant on a simulator", "endpoint http://127.0.0.1:9", "merchant 1900000109 " + real + " wxd930ea5d5a258f4f", ""},
		// The demo shop queries orders with the API token; this gateway has none.
		{"a shop without the gateway's api_token", "endpoint http://127.0.0.1:9", "merchant 1 k1234567890123456789012345678901 wx1\n\t\tshop http://127.0.0.1:8080/wxpay", "queries orders with the wxpay app's api_token, and there is none"},
		{"a cashier_url that is no URL", "endpoint http://127.0.0.1:9", "merchant 1 k1234567890123456789012345678901 wx1\n\t\tcashier_url /sim/cashier", `cashier_url "/sim/cashier" is not an absolute http(s) URL`},
		{"a shop that is no URL", "endpoint http://127.0.0.1:9", "merchant 1 k1234567890123456789012345678901 wx1\n\t\tshop 127.0.0.1:8080", `shop "127.0.0.1:8080" is not an absolute http(s) URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tryLoadCaddyfile(cfg(tt.endpoint, tt.merchant))
			if err == nil {
				_ = caddy.Stop()
			}
			if (tt.says == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.says)) {
				t.Fatalf("err = %v, want %q", err, tt.says)
			}
			if err != nil && strings.Contains(err.Error(), real) {
				t.Fatalf("the error reveals the key: %v", err)
			}
		})
	}
}
