package wxpay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// rsaKey is an RSA-2048 key like the ones in WeChat's apiclient_key.pem,
// made once per test binary: RSA key generation is slow under -race.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsaKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rsaClient issues an RSA client certificate from pki and returns it and
// its key as PEM (the key in PKCS#8, as in apiclient_key.pem).
func rsaClient(t *testing.T, pki *testPKI) (certPEM, keyPEM []byte) {
	key := testRSAKey(t)
	der := pki.issue(t, clientTemplate(), &key.PublicKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// pemBody returns the base64 lines of a PEM document: what must never
// appear in an error.
func pemBody(doc []byte) []string {
	var lines []string
	for _, l := range strings.Split(string(doc), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestLoadClientCertificate(t *testing.T) {
	pki := newTestPKI(t, "WeChat")
	other := newTestPKI(t, "Other")
	rsaCert, rsaKeyPKCS8 := rsaClient(t, pki)
	rsaKeyPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testRSAKey(t))})

	tests := []struct {
		name          string
		certPEM, key  []byte
		wantErr       string // "" for success
		secretsInside [][]byte
	}{
		{"ECDSA, PKCS#8", pki.clientPEM, pki.keyPEM, "", nil},
		{"RSA, PKCS#8 (apiclient_key.pem)", rsaCert, rsaKeyPKCS8, "", nil},
		{"RSA, PKCS#1", rsaCert, rsaKeyPKCS1, "", nil},
		{"inputs swapped", pki.keyPEM, pki.clientPEM, "switched", [][]byte{pki.keyPEM}},
		{"key of another certificate", pki.clientPEM, other.keyPEM, "does not match", [][]byte{other.keyPEM}},
		{"RSA key for an ECDSA certificate", pki.clientPEM, rsaKeyPKCS8, "does not match", [][]byte{rsaKeyPKCS8}},
		{"no key", pki.clientPEM, nil, "key", nil},
		{"no certificate", nil, pki.keyPEM, "certificate", [][]byte{pki.keyPEM}},
		{"key not PEM", pki.clientPEM, []byte("MHcCAQEEIBRVy8rbLM2FqDOGBJVuL2pkQp5wdGvgYQ4E6tgD5Sc8oAoGCCqGSM49"), "key", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := LoadClientCertificate(tt.certPEM, tt.key)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadClientCertificate: %v", err)
				}
				if cert.Leaf == nil || cert.Leaf.Subject.CommonName != "10000100" || cert.PrivateKey == nil || len(cert.Certificate) != 1 {
					t.Fatalf("certificate %+v", cert)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadClientCertificate succeeded")
			}
			if !strings.HasPrefix(err.Error(), "wxpay: client certificate: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one about %q", err, tt.wantErr)
			}
			for _, secret := range tt.secretsInside {
				for _, line := range pemBody(secret) {
					if strings.Contains(err.Error(), line) {
						t.Fatalf("the error carries key material: %v", err)
					}
				}
			}
		})
	}
}

func TestNewMTLSHTTPClient(t *testing.T) {
	pki := newTestPKI(t, "WeChat")
	hc := NewMTLSHTTPClient(pki.client, 8)
	tr, ok := hc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("Transport is %T", hc.Transport)
	}
	cfg := tr.TLSClientConfig
	if cfg.RootCAs != nil {
		t.Error("RootCAs is set: the client must trust Go's default roots (the system's, or SSL_CERT_FILE)")
	}
	if cfg.InsecureSkipVerify || cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS config %+v", cfg)
	}
	if cfg.GetClientCertificate == nil {
		t.Fatal("no client certificate attached")
	}
	// The certificate goes out even when the server names CAs it does not
	// know, rather than silently none.
	got, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{AcceptableCAs: [][]byte{[]byte("another CA")}})
	if err != nil || got == nil || !bytes.Equal(got.Certificate[0], pki.client.Certificate[0]) {
		t.Errorf("GetClientCertificate = %v, %v", got, err)
	}
	if tr.MaxIdleConnsPerHost != 8 || hc.CheckRedirect == nil {
		t.Errorf("not sized like NewHTTPClient: MaxIdleConnsPerHost %d", tr.MaxIdleConnsPerHost)
	}
	// Each client has its own TLS config.
	if NewHTTPClient(8).Transport.(*http.Transport).TLSClientConfig.GetClientCertificate != nil {
		t.Error("NewMTLSHTTPClient changed NewHTTPClient's config")
	}

	// Untouched, it does not trust the test's CA: no bundle of its own.
	_, srv := newMTLSFake(t, pki, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return refundAnswer(req) })
	c := &Client{MchID: "10000100", Key: officialKey, Endpoint: srv.URL, TLSHTTPClient: hc}
	r := validRefund()
	if _, err := c.Refund(context.Background(), &r); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("Refund to a server of an unknown CA: err = %v", err)
	}
}

// TestLoadPKCS12 builds apiclient_cert.p12 files with the openssl command
// line, as the merchant platform's are built (legacy algorithms, the mch_id
// as password):
//
//	openssl pkcs12 -export -legacy -in cert.pem -inkey key.pem -certfile ca.pem -name "Tenpay Certificate" -passout env:WXPAY_P12_PASS -out apiclient_cert.p12
func TestLoadPKCS12(t *testing.T) {
	openssl := requireTool(t, "openssl")
	pki := newTestPKI(t, "WeChat")
	certPEM, keyPEM := rsaClient(t, pki)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("cert.pem", certPEM)
	keyFile := write("key.pem", keyPEM)
	caFile := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.caCert.Raw}))
	export := func(name string, legacy bool) []byte {
		t.Helper()
		args := []string{"pkcs12", "-export"}
		if legacy {
			args = append(args, "-legacy")
		}
		out := filepath.Join(dir, name)
		args = append(args, "-in", certFile, "-inkey", keyFile, "-certfile", caFile, "-name", "Tenpay Certificate", "-passout", "env:WXPAY_P12_PASS", "-out", out)
		cmd := exec.Command(openssl, args...)
		cmd.Env = append(os.Environ(), "WXPAY_P12_PASS=10000100")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("%s %s failed (no legacy provider?): %v\n%s", openssl, strings.Join(args, " "), err, msg)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	legacy := export("apiclient_cert.p12", true)

	t.Run("mch_id as password", func(t *testing.T) {
		cert, err := LoadPKCS12(legacy, "10000100")
		if err != nil {
			t.Fatalf("LoadPKCS12: %v", err)
		}
		if cert.Leaf == nil || cert.Leaf.Subject.CommonName != "10000100" {
			t.Fatalf("leaf %+v", cert.Leaf)
		}
		if len(cert.Certificate) != 2 || !bytes.Equal(cert.Certificate[1], pki.caCert.Raw) {
			t.Errorf("chain of %d certificates, want the client's then the CA's", len(cert.Certificate))
		}
		if k, ok := cert.PrivateKey.(*rsa.PrivateKey); !ok || !k.Equal(testRSAKey(t)) {
			t.Errorf("private key %T is not the one exported", cert.PrivateKey)
		}
		// The loaded certificate opens the server's door.
		fake, srv := newMTLSFake(t, pki, func(_ http.ResponseWriter, _ *http.Request, req Params) Params { return refundAnswer(req) })
		hc := trusting(NewMTLSHTTPClient(cert, 2), pki)
		t.Cleanup(hc.CloseIdleConnections)
		c := &Client{MchID: "10000100", Key: officialKey, Endpoint: srv.URL, TLSHTTPClient: hc}
		r := validRefund()
		if _, err := c.Refund(context.Background(), &r); err != nil {
			t.Fatalf("Refund with the .p12's certificate: %v", err)
		}
		if peer := fake.last().peer; peer != "10000100" {
			t.Errorf("the server saw client certificate %q", peer)
		}
	})

	tests := []struct {
		name     string
		data     func() []byte
		password string
		want     string
	}{
		{"wrong password", func() []byte { return legacy }, "10000101", "wrong password"},
		{"empty password", func() []byte { return legacy }, "", "wrong password"},
		{"OpenSSL 3 defaults", func() []byte { return export("modern.p12", false) }, "10000100", "-legacy"},
		{"truncated", func() []byte { return legacy[:len(legacy)/2] }, "10000100", "p12"},
		{"PEM instead", func() []byte { return certPEM }, "10000100", "p12"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := LoadPKCS12(tt.data(), tt.password)
			if err == nil {
				if tt.name == "OpenSSL 3 defaults" {
					t.Skipf("this openssl writes legacy .p12 files by default (%s)", cert.Leaf.Subject)
				}
				t.Fatal("LoadPKCS12 succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "wxpay: apiclient_cert.p12: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
			for _, secret := range []string{"10000100", "10000101"} {
				if strings.Contains(msg, secret) {
					t.Errorf("the error carries the password: %v", err)
				}
			}
			for _, line := range pemBody(keyPEM) {
				if strings.Contains(msg, line) {
					t.Fatalf("the error carries key material: %v", err)
				}
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
