package wxpayv3

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The keys, certificates and vectors of testdata/ were made by
// testdata/gen_vectors.py with Python's cryptography and the openssl CLI,
// outside this code: see that script for how each one was computed.

type vectors struct {
	Now          int64  `json:"now"`
	MchID        string `json:"mchid"`
	AppID        string `json:"appid"`
	APIv3Key     string `json:"apiv3_key"`
	PublicKeyID  string `json:"public_key_id"`
	Serials      map[string]string
	RequestSigns []struct {
		Name          string `json:"name"`
		Method        string `json:"method"`
		PathAndQuery  string `json:"path_and_query"`
		Timestamp     int64  `json:"timestamp"`
		Nonce         string `json:"nonce"`
		Body          string `json:"body"`
		Message       string `json:"message"`
		Signature     string `json:"signature"`
		Authorization string `json:"authorization"`
	} `json:"request_signatures"`
	AnswerSigns []struct {
		Name      string `json:"name"`
		Serial    string `json:"serial"`
		Timestamp int64  `json:"timestamp"`
		Nonce     string `json:"nonce"`
		Body      string `json:"body"`
		Message   string `json:"message"`
		Signature string `json:"signature"`
	} `json:"answer_signatures"`
	AEAD []struct {
		Name           string `json:"name"`
		Nonce          string `json:"nonce"`
		AssociatedData string `json:"associated_data"`
		Plaintext      string `json:"plaintext"`
		Ciphertext     string `json:"ciphertext"`
	} `json:"aead"`
	Notifications []struct {
		Name      string            `json:"name"`
		EventType string            `json:"event_type"`
		Body      string            `json:"body"`
		Plaintext string            `json:"plaintext"`
		Headers   map[string]string `json:"headers"`
	} `json:"notifications"`
	JSAPI struct {
		AppID     string `json:"appid"`
		PrepayID  string `json:"prepay_id"`
		Timestamp int64  `json:"timestamp"`
		Nonce     string `json:"nonce"`
		Message   string `json:"message"`
		PaySign   string `json:"pay_sign"`
	} `json:"jsapi"`
	APP struct {
		AppID     string `json:"appid"`
		MchID     string `json:"mchid"`
		PrepayID  string `json:"prepay_id"`
		Timestamp int64  `json:"timestamp"`
		Nonce     string `json:"nonce"`
		Message   string `json:"message"`
		Sign      string `json:"sign"`
	} `json:"app"`
	OAEP []struct {
		Plaintext  string `json:"plaintext"`
		Ciphertext string `json:"ciphertext"`
	} `json:"oaep"`
	CertificatesAnswer      signedBody `json:"certificates_answer"`
	CertificatesAnswerRogue signedBody `json:"certificates_answer_rogue"`
}

// signedBody is an answer body with what its headers carry.
type signedBody struct {
	Body      string `json:"body"`
	Timestamp int64  `json:"timestamp"`
	Nonce     string `json:"nonce"`
	Serial    string `json:"serial"`
	Signature string `json:"signature"`
}

func (s signedBody) header() http.Header {
	h := http.Header{}
	h.Set(HeaderTimestamp, itoa(s.Timestamp))
	h.Set(HeaderNonce, s.Nonce)
	h.Set(HeaderSerial, s.Serial)
	h.Set(HeaderSignature, s.Signature)
	h.Set(HeaderSignatureType, AuthScheme)
	return h
}

// fixture is everything of testdata/, parsed once.
type fixture struct {
	v            vectors
	key          APIv3Key
	now          time.Time
	merchantKey  *rsa.PrivateKey
	merchantCert *x509.Certificate
	wechatKey    *rsa.PrivateKey // the private half of the WeChat Pay public key
	wechatPub    *rsa.PublicKey
	platformKey  *rsa.PrivateKey
	platformCert *x509.Certificate
	platform2Key *rsa.PrivateKey
	platform2    *x509.Certificate
	oldKey       *rsa.PrivateKey
	oldCert      *x509.Certificate
	rogueKey     *rsa.PrivateKey
	rogueCert    *x509.Certificate
}

var loadFixture = sync.OnceValues(func() (*fixture, error) {
	var f fixture
	b, err := os.ReadFile(filepath.Join("testdata", "vectors.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &f.v); err != nil {
		return nil, err
	}
	f.key = APIv3Key(f.v.APIv3Key)
	f.now = time.Unix(f.v.Now, 0)
	for _, k := range []struct {
		file string
		dst  **rsa.PrivateKey
	}{
		{"merchant_key.pem", &f.merchantKey}, {"wechat_pubkey_key.pem", &f.wechatKey},
		{"platform_key.pem", &f.platformKey}, {"platform2_key.pem", &f.platform2Key},
		{"platform_old_key.pem", &f.oldKey}, {"rogue_key.pem", &f.rogueKey},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", k.file))
		if err != nil {
			return nil, err
		}
		if *k.dst, err = ParsePrivateKey(b); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct {
		file string
		dst  **x509.Certificate
	}{
		{"merchant_cert.pem", &f.merchantCert}, {"platform_cert.pem", &f.platformCert},
		{"platform2_cert.pem", &f.platform2}, {"platform_old_cert.pem", &f.oldCert},
		{"rogue_cert.pem", &f.rogueCert},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", c.file))
		if err != nil {
			return nil, err
		}
		if *c.dst, err = ParseCertificate(b); err != nil {
			return nil, err
		}
	}
	b, err = os.ReadFile(filepath.Join("testdata", "wechat_pubkey.pem"))
	if err != nil {
		return nil, err
	}
	if f.wechatPub, err = ParsePublicKey(b); err != nil {
		return nil, err
	}
	return &f, nil
})

func fx(t testing.TB) *fixture {
	t.Helper()
	f, err := loadFixture()
	if err != nil {
		t.Fatalf("testdata: %v", err)
	}
	return f
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// clock is a settable clock shared by a fake WeChat and the client.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// headerOf builds an http.Header from a map.
func headerOf(m map[string]string) http.Header {
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

// signAnswer returns the headers of body signed as WeChat signs, with key
// under serial, at ts.
func signAnswer(t testing.TB, key *rsa.PrivateKey, serial string, ts int64, nonce string, body []byte) http.Header {
	t.Helper()
	sig, err := SignSHA256WithRSA(key, Message(itoa(ts), nonce, string(body)))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(HeaderTimestamp, itoa(ts))
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSerial, serial)
	h.Set(HeaderSignature, sig)
	h.Set(HeaderSignatureType, AuthScheme)
	return h
}
