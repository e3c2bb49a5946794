package wxpay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiFake is a small hand-written stand-in for WeChat's API v2 endpoints
// other than unifiedorder (see fakeWeChat): it decodes each request with
// DecodeXML, checks its sign with refSign (independent of sign.go) under the
// sign_type it names and the fields its path needs, records it, and answers
// with the fields the test's answer function returns, signed like WeChat
// with the request's sign type. An answer function that writes to w itself
// returns nil.
type apiFake struct {
	t      *testing.T
	key    APIKey
	mchID  string
	answer func(w http.ResponseWriter, r *http.Request, req Params) Params

	mu       sync.Mutex
	requests []fakeRequest
}

// fakeRequest is one request an apiFake received.
type fakeRequest struct {
	path   string
	body   string // the exact bytes received
	params Params
	peer   string // the CommonName of the client certificate, over mTLS
}

// requiredFields are the fields each endpoint needs besides sign.
var requiredFields = map[string][]string{
	"/pay/unifiedorder":  {"appid", "mch_id", "nonce_str", "body", "out_trade_no", "total_fee", "spbill_create_ip", "notify_url", "trade_type"},
	"/pay/orderquery":    {"appid", "mch_id", "nonce_str", "out_trade_no"},
	"/pay/closeorder":    {"appid", "mch_id", "nonce_str", "out_trade_no"},
	"/secapi/pay/refund": {"appid", "mch_id", "nonce_str", "out_refund_no", "total_fee", "refund_fee"},
	"/pay/refundquery":   {"appid", "mch_id", "nonce_str", "out_refund_no"},
	"/pay/downloadbill":  {"appid", "mch_id", "nonce_str", "bill_date", "bill_type"},
}

func (f *apiFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	required, known := requiredFields[r.URL.Path]
	if r.Method != http.MethodPost || !known {
		t.Errorf("request %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/xml") {
		t.Errorf("Content-Type %q", ct)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading the request: %v", err)
		return
	}
	req, err := DecodeXML(body)
	if err != nil {
		t.Errorf("request does not decode: %v\n%s", err, body)
		w.Write(xmlDoc("xml", Params{{"return_code", "FAIL"}, {"return_msg", "XML格式错误"}}))
		return
	}
	fr := fakeRequest{path: r.URL.Path, body: string(body), params: req}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		fr.peer = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	f.mu.Lock()
	f.requests = append(f.requests, fr)
	f.mu.Unlock()

	st := fakeSignType(t, req)
	if want := refSign(req, f.key, st); req.Get("sign") != want {
		t.Errorf("request sign %q, want %s %s", req.Get("sign"), st, want)
		w.Write(xmlDoc("xml", Params{{"return_code", "FAIL"}, {"return_msg", "签名错误"}}))
		return
	}
	for _, name := range required {
		if req.Get(name) == "" {
			t.Errorf("%s request lacks %s", r.URL.Path, name)
		}
	}
	if req.Get("mch_id") != f.mchID {
		t.Errorf("request mch_id %q, want %q", req.Get("mch_id"), f.mchID)
	}
	ans := f.answer(w, r, req)
	if ans == nil {
		return
	}
	if ans.Get("return_code") == "SUCCESS" {
		ans = append(ans, Param{"sign", refSign(ans, f.key, st)})
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Write(xmlDoc("xml", ans))
}

func fakeSignType(t *testing.T, req Params) SignType {
	switch req.Get("sign_type") {
	case "", "MD5":
		return SignTypeMD5
	case "HMAC-SHA256":
		return SignTypeHMACSHA256
	}
	t.Errorf("request sign_type %q", req.Get("sign_type"))
	return SignTypeMD5
}

func (f *apiFake) received() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

func (f *apiFake) last() fakeRequest {
	rs := f.received()
	if len(rs) == 0 {
		f.t.Fatal("the fake received no request")
	}
	return rs[len(rs)-1]
}

// newAPIFake starts a plain HTTP fake.
func newAPIFake(t *testing.T, answer func(http.ResponseWriter, *http.Request, Params) Params) (*apiFake, *httptest.Server) {
	f := &apiFake{t: t, key: officialKey, mchID: "10000100", answer: answer}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// apiClient is a Client of the fake srv, with a plain HTTP client for
// /secapi/ calls too (mutual TLS is tested on its own).
func apiClient(srv *httptest.Server, st SignType) *Client {
	hc := srv.Client()
	return &Client{MchID: "10000100", Key: officialKey, SignType: st, Endpoint: srv.URL, HTTPClient: hc, TLSHTTPClient: hc}
}

// okAnswer is a successful answer to req: return_code and result_code
// SUCCESS, the request's appid and mch_id, a nonce, then fields.
func okAnswer(req Params, fields ...Param) Params {
	p := Params{
		{"return_code", "SUCCESS"}, {"return_msg", "OK"},
		{"appid", req.Get("appid")}, {"mch_id", req.Get("mch_id")},
		{"nonce_str", "IITRi8Iabbblz1Jc"}, {"result_code", "SUCCESS"},
	}
	for _, f := range fields {
		p.Set(f.Name, f.Value)
	}
	return p
}

// failAnswer is a result_code FAIL answer with err_code code.
func failAnswer(req Params, code, des string) Params {
	return Params{
		{"return_code", "SUCCESS"}, {"return_msg", "OK"},
		{"appid", req.Get("appid")}, {"mch_id", req.Get("mch_id")},
		{"nonce_str", "IITRi8Iabbblz1Jc"}, {"result_code", "FAIL"},
		{"err_code", code}, {"err_code_des", des},
	}
}

// testPKI is a certificate authority made for one test, with a server
// certificate for 127.0.0.1 and a merchant client certificate whose
// CommonName is the mch_id, as in WeChat's apiclient_cert.
type testPKI struct {
	caCert    *x509.Certificate
	caKey     *ecdsa.PrivateKey
	pool      *x509.CertPool
	server    tls.Certificate
	clientPEM []byte // apiclient_cert.pem
	keyPEM    []byte // apiclient_key.pem, PKCS#8
	client    tls.Certificate
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 1}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name + " Test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	pki := &testPKI{caCert: caCert, caKey: caKey, pool: x509.NewCertPool()}
	pki.pool.AddCert(caCert)

	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serverDER := pki.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &serverKey.PublicKey)
	pki.server = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}

	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientDER := pki.issue(t, clientTemplate(), &clientKey.PublicKey)
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pki.clientPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER})
	pki.keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pki.client = tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}
	return pki
}

// clientTemplate is a merchant client certificate like WeChat's: its
// CommonName is the mch_id.
func clientTemplate() *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: "10000100", Organization: []string{"微信商户系统"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
}

// issue signs a certificate for pub with the CA.
func (pki *testPKI) issue(t *testing.T, tmpl *x509.Certificate, pub any) []byte {
	t.Helper()
	now := time.Now()
	tmpl.SerialNumber = nextSerial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.caCert, pub, pki.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// newMTLSFake starts a fake that requires and verifies a client certificate
// issued by pki's CA.
func newMTLSFake(t *testing.T, pki *testPKI, answer func(http.ResponseWriter, *http.Request, Params) Params) (*apiFake, *httptest.Server) {
	f := &apiFake{t: t, key: officialKey, mchID: "10000100", answer: answer}
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
		Certificates: []tls.Certificate{pki.server},
		MinVersion:   tls.VersionTLS12,
	}
	// The handshake errors of refused clients are expected; keep them out
	// of the test log.
	srv.Config.ErrorLog = quietLog()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return f, srv
}

// trusting makes hc, a client from NewHTTPClient or NewMTLSHTTPClient,
// trust pki's CA as well: in production it trusts the system's roots.
func trusting(hc *http.Client, pki *testPKI) *http.Client {
	hc.Transport.(*http.Transport).TLSClientConfig.RootCAs = pki.pool
	return hc
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
