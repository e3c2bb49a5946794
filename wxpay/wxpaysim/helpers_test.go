package wxpaysim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// testPKI is a certificate authority made for one test.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"wxpaysim test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{cert: cert, key: key, pool: pool}
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// issue makes a certificate for cn with the given extended key usage; ips
// become IP subject alternative names (for a server).
func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage, ips ...net.IP) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		// Like WeChat's apiclient_cert.pem: CN is the mch_id.
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"微信商户系统"}, OrganizationalUnit: []string{"wxpaysim test"}},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *testPKI) clientCert(t *testing.T, mchID string) *tls.Certificate {
	t.Helper()
	c := p.issue(t, mchID, x509.ExtKeyUsageClientAuth)
	return &c
}

// tenv is a simulator served over TLS with the certificates of pki.
type tenv struct {
	sim *Simulator
	srv *httptest.Server
	pki *testPKI
}

// newTLSEnv starts a simulator that knows the test merchant and trusts
// pki's client certificates, served with s.TLSConfig. Create notify
// servers before it, so that the simulator is closed first.
func newTLSEnv(t *testing.T, cfg Config) *tenv {
	t.Helper()
	pki := newPKI(t, "wxpaysim test CA")
	if cfg.ClientCAs == nil {
		cfg.ClientCAs = pki.pool
	}
	return newTLSEnvWith(t, cfg, pki, nil)
}

// newTLSEnvWith starts a simulator configured by cfg whose server
// certificate comes from pki; tweak, when set, changes the server's TLS
// configuration.
func newTLSEnvWith(t *testing.T, cfg Config, pki *testPKI, tweak func(*tls.Config)) *tenv {
	t.Helper()
	if cfg.Merchants == nil {
		cfg.Merchants = []Merchant{{MchID: testMchID, Key: testKey, AppIDs: []string{appA, appB}}}
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	sim := New(cfg)
	srv := httptest.NewUnstartedServer(sim)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.TLS = sim.TLSConfig(pki.issue(t, "127.0.0.1", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1)))
	if tweak != nil {
		tweak(srv.TLS)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close) // runs before srv.Close
	return &tenv{sim: sim, srv: srv, pki: pki}
}

// api returns a raw API client of the test merchant that presents cert
// (none when nil).
func (e *tenv) api(t *testing.T, cert *tls.Certificate) *rawClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.pki.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawClient{
		base: e.srv.URL, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second},
		mchID: testMchID, key: testKey, st: wxpay.SignTypeMD5,
	}
}

// merchantAPI returns a raw API client presenting a valid certificate of
// the test merchant.
func (e *tenv) merchantAPI(t *testing.T) *rawClient {
	t.Helper()
	return e.api(t, e.pki.clientCert(t, testMchID))
}

// rawClient builds, signs and posts API v2 requests by hand, with
// wxpay.Sign and wxpay.EncodeXML only.
type rawClient struct {
	base  string
	hc    *http.Client
	mchID string
	key   wxpay.APIKey
	st    wxpay.SignType
}

// with returns a copy of c signing with st.
func (c *rawClient) with(st wxpay.SignType) *rawClient {
	d := *c
	d.st = st
	return &d
}

// request builds a signed request: appid, mch_id and nonce_str (and
// sign_type for HMAC-SHA256) then kv; a pair in kv replaces a default, and
// an empty value leaves the field out.
func (c *rawClient) request(t *testing.T, kv ...string) []byte {
	t.Helper()
	p := wxpay.Params{{Name: "appid", Value: appA}, {Name: "mch_id", Value: c.mchID}, {Name: "nonce_str", Value: randomString(alnum, 32)}}
	if c.st == wxpay.SignTypeHMACSHA256 {
		p.Set("sign_type", string(c.st))
	}
	for i := 0; i+1 < len(kv); i += 2 {
		p.Set(kv[i], kv[i+1])
	}
	kept := p[:0]
	for _, f := range p {
		if f.Value != "" {
			kept = append(kept, f)
		}
	}
	return signedXML(t, kept, c.key, c.st)
}

// post sends body to path and returns the answer.
func (c *rawClient) post(t *testing.T, path string, body []byte) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// raw signs kv, posts it to path and returns the HTTP answer.
func (c *rawClient) raw(t *testing.T, path string, kv ...string) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := c.post(t, path, c.request(t, kv...))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	return resp, body
}

// call signs kv, posts it to path and decodes the XML answer. An answer
// with return_code SUCCESS must be signed with c's sign type (and not
// verify with the other); a return_code FAIL one must not be signed.
func (c *rawClient) call(t *testing.T, path string, kv ...string) wxpay.Params {
	t.Helper()
	resp, body := c.raw(t, path, kv...)
	p := decodeAnswer(t, resp, body, c.key, c.st)
	if p.Get("return_code") == "SUCCESS" && p.Get("mch_id") != c.mchID {
		t.Errorf("answer mch_id %q, want %s", p.Get("mch_id"), c.mchID)
	}
	return p
}

func decodeAnswer(t *testing.T, resp *http.Response, body []byte, key wxpay.APIKey, st wxpay.SignType) wxpay.Params {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
		t.Fatalf("Content-Type %q: %s", ct, body)
	}
	p, err := wxpay.DecodeXML(body)
	if err != nil {
		t.Fatalf("answer is not XML: %v: %s", err, body)
	}
	switch p.Get("return_code") {
	case "SUCCESS":
		if err := wxpay.Verify(p, key, st); err != nil {
			t.Fatalf("answer does not verify with %s: %v: %s", st, err, body)
		}
		other := wxpay.SignTypeMD5
		if st == wxpay.SignTypeMD5 {
			other = wxpay.SignTypeHMACSHA256
		}
		if wxpay.Verify(p, key, other) == nil {
			t.Fatalf("answer verifies with %s too", other)
		}
		if _, ok := p.Lookup("sign_type"); ok {
			t.Errorf("answer names sign_type")
		}
	case "FAIL":
		if _, ok := p.Lookup("sign"); ok {
			t.Errorf("a refusal is signed: %s", body)
		}
	default:
		t.Fatalf("return_code %q: %s", p.Get("return_code"), body)
	}
	return p
}

// wantOK fails unless p is a signed business success.
func wantOK(t *testing.T, p wxpay.Params) {
	t.Helper()
	if p.Get("return_code") != "SUCCESS" || p.Get("result_code") != "SUCCESS" {
		t.Fatalf("answer %v: return_code %s %s, result_code %s, err_code %s %s", p, p.Get("return_code"), p.Get("return_msg"),
			p.Get("result_code"), p.Get("err_code"), p.Get("err_code_des"))
	}
}

// wantErrCode fails unless p is a signed result_code FAIL with code.
func wantErrCode(t *testing.T, p wxpay.Params, code string) {
	t.Helper()
	if p.Get("return_code") != "SUCCESS" || p.Get("result_code") != "FAIL" || p.Get("err_code") != code || p.Get("err_code_des") == "" {
		t.Fatalf("answer: return_code %s %s, result_code %s, err_code %s %q; want err_code %s", p.Get("return_code"), p.Get("return_msg"),
			p.Get("result_code"), p.Get("err_code"), p.Get("err_code_des"), code)
	}
}

// wantRefused fails unless p is an unsigned return_code FAIL with msg.
func wantRefused(t *testing.T, p wxpay.Params, msg string) {
	t.Helper()
	if p.Get("return_code") != "FAIL" || p.Get("return_msg") != msg || len(p) != 2 {
		t.Fatalf("answer %v: return_code %s, return_msg %q; want FAIL %q", p, p.Get("return_code"), p.Get("return_msg"), msg)
	}
}

// place places a JSAPI order of 888 fen with unifiedorder.
func (c *rawClient) place(t *testing.T, outTradeNo, notifyURL string) {
	t.Helper()
	kv := []string{"out_trade_no", outTradeNo, "notify_url", notifyURL}
	for _, f := range baseParams(outTradeNo) {
		switch f.Name {
		case "out_trade_no", "notify_url":
		default:
			kv = append(kv, f.Name, f.Value)
		}
	}
	kv = append(kv, "attach", "支付测试", "device_info", "WEB")
	wantOK(t, c.call(t, "/pay/unifiedorder", kv...))
}

// pay pays an order of the test merchant.
func pay(t *testing.T, sim *Simulator, outTradeNo string, opts PayOptions) *Payment {
	t.Helper()
	opts.MchID, opts.OutTradeNo = testMchID, outTradeNo
	p, err := sim.Pay(context.Background(), opts)
	if err != nil {
		t.Fatalf("Pay %s: %v", outTradeNo, err)
	}
	return p
}

// refundKV are the fields of a refund of outTradeNo (888 fen).
func refundKV(outTradeNo, outRefundNo string, refundFee string, kv ...string) []string {
	return append([]string{"out_trade_no", outTradeNo, "out_refund_no", outRefundNo, "total_fee", "888", "refund_fee", refundFee}, kv...)
}
