package caddymodule_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a private CA made for this test run: the simulator's server
// certificate (127.0.0.1) and the merchants' API client certificates
// (CommonName = mch_id, as WeChat issues them) chain to it. The gateway
// trusts it through SSL_CERT_FILE, the way Go reads system roots: nothing is
// pinned in the code under test.
var testPKI struct {
	caPool     *x509.CertPool
	serverCert tls.Certificate
	clientCert map[string][2]string // mch_id -> cert.pem, key.pem paths
}

// TestMain keeps Caddy's data and config (the default ledger, autosaved
// configs) in a temporary folder instead of the user's home, and makes the
// test PKI.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-wxpay-test")
	if err == nil {
		err = makeTestPKI(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_DATA_HOME", dir+"/data")
	os.Setenv("XDG_CONFIG_HOME", dir+"/config")
	os.Setenv("SSL_CERT_FILE", filepath.Join(dir, "ca.pem"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func makeTestPKI(dir string) error {
	newKey := func() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	caKey, err := newKey()
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caddy-wxpay test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	testPKI.caPool = x509.NewCertPool()
	testPKI.caPool.AddCert(ca)
	// The bundle SSL_CERT_FILE names: this CA, and the demo's (for the
	// test that runs Caddyfile.example).
	demoCA, err := os.ReadFile("../demo/ca.pem")
	if err != nil {
		return err
	}
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), demoCA...)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), bundle, 0o600); err != nil {
		return err
	}
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey, error) {
		k, err := newKey()
		if err != nil {
			return nil, nil, err
		}
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		return der, k, err
	}
	der, k, err := issue(2, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	if err != nil {
		return err
	}
	testPKI.serverCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	testPKI.clientCert = map[string][2]string{}
	for i, mch := range []string{testMchID, testHMACMch} {
		der, k, err := issue(int64(10+i), &x509.Certificate{Subject: pkix.Name{CommonName: mch},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		certFile, keyFile := filepath.Join(dir, mch+"_cert.pem"), filepath.Join(dir, mch+"_key.pem")
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
			return err
		}
		testPKI.clientCert[mch] = [2]string{certFile, keyFile}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// The test PKI is what the integration tests trust: the simulator's
// certificate verifies for 127.0.0.1 as a server, each merchant's client
// certificate verifies as a client with its mch_id as CommonName, and the
// SSL_CERT_FILE bundle holds this CA and the demo's.
func TestTestPKI(t *testing.T) {
	leaf, err := x509.ParseCertificate(testPKI.serverCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: testPKI.caPool, DNSName: "127.0.0.1",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	for _, mch := range []string{testMchID, testHMACMch} {
		files := testPKI.clientCert[mch]
		pair, err := tls.LoadX509KeyPair(files[0], files[1])
		if err != nil {
			t.Fatalf("client certificate of %s: %v", mch, err)
		}
		c, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject.CommonName != mch {
			t.Errorf("client certificate CommonName %q, want %s", c.Subject.CommonName, mch)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: testPKI.caPool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate of %s: %v", mch, err)
		}
	}
	bundle, err := os.ReadFile(os.Getenv("SSL_CERT_FILE"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("SSL_CERT_FILE holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("SSL_CERT_FILE does not trust the test CA: %v", err)
	}
	demoCA, err := os.ReadFile("../demo/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(demoCA)
	if block == nil || !bytes.Contains(bundle, pem.EncodeToMemory(block)) {
		t.Error("SSL_CERT_FILE does not hold the demo CA")
	}
}
