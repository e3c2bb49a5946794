package wxpayv3

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// certsAnswer is a /v3/certificates answer listing certs, encrypted with
// key, signed by signKey under serial.
func certsAnswer(t testing.TB, key APIv3Key, certs []*x509.Certificate, signKey *rsa.PrivateKey, serial string) *reply {
	t.Helper()
	type item struct {
		SerialNo           string    `json:"serial_no"`
		EffectiveTime      string    `json:"effective_time"`
		ExpireTime         string    `json:"expire_time"`
		EncryptCertificate *Resource `json:"encrypt_certificate"`
	}
	var data []item
	for _, c := range certs {
		r, err := EncryptResource(key, "", "certificate", EncodeCertificates([]*x509.Certificate{c}))
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, item{CertificateSerial(c), c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), r})
	}
	b, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		t.Fatal(err)
	}
	return &reply{status: 200, body: b, signKey: signKey, serial: serial}
}

// The answer of vectors.json was made by Python: platform certificates A
// and B encrypted with AESGCM under the APIv3 key, the body signed with
// A's key. It is served here byte for byte, with its own headers.
func TestDownloadCertificatesVector(t *testing.T) {
	w := newFakeWeChat(t)
	f := w.f
	serve := func(a signedBody, change func(h http.Header)) {
		h := a.header()
		if change != nil {
			change(h)
		}
		m := map[string]string{}
		for k := range h {
			m[k] = h.Get(k)
		}
		w.handle(func(r *seenRequest) *reply {
			if r.Method != "GET" || r.URI != "/v3/certificates" || len(r.Body) != 0 {
				t.Errorf("%s %s", r.Method, r.URI)
			}
			return &reply{status: 200, body: []byte(a.Body), unsigned: true, header: m}
		})
	}
	c := w.client()
	c.Verifier = &Verifier{Keys: NewKeySet(nil), Now: w.clock.Now} // nothing known yet: bootstrap

	serve(f.v.CertificatesAnswer, nil)
	certs, err := c.DownloadCertificates(context.Background(), f.key)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(f.platformCert) || !certs[1].Equal(f.platform2) {
		t.Fatalf("%d certificates", len(certs))
	}

	// The same body signed by a key WeChat never listed, under its own serial.
	serve(f.v.CertificatesAnswerRogue, nil)
	certs, err = c.DownloadCertificates(context.Background(), f.key)
	var ve *VerifyError
	var unknown *UnknownSerialError
	if certs != nil || !errors.As(err, &ve) || !errors.As(err, &unknown) || unknown.Serial != f.v.Serials["rogue"] {
		t.Fatalf("rogue: err = %v", err)
	}
	// … and under the serial of a listed certificate.
	serve(f.v.CertificatesAnswerRogue, func(h http.Header) { h.Set(HeaderSerial, f.v.Serials["platform"]) })
	if _, err = c.DownloadCertificates(context.Background(), f.key); !errors.As(err, &ve) || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("rogue under a listed serial: err = %v", err)
	}
	// The genuine answer decrypted with another key.
	serve(f.v.CertificatesAnswer, nil)
	if _, err = c.DownloadCertificates(context.Background(), APIv3Key(strings.Repeat("x", 32))); !errors.As(err, &ve) || !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong APIv3 key: err = %v", err)
	}
	if _, err = c.DownloadCertificates(context.Background(), "short"); err == nil {
		t.Fatal("short key")
	}
}

func TestDownloadCertificatesRefuses(t *testing.T) {
	w := newFakeWeChat(t)
	f := w.f
	a, b := f.platformCert, f.platform2
	mismatch := certsAnswer(t, f.key, []*x509.Certificate{a}, f.platformKey, f.v.Serials["platform"])
	mismatch.body = []byte(strings.Replace(string(mismatch.body), f.v.Serials["platform"], f.v.Serials["platform2"], 1))
	var ve *VerifyError
	var unknown *UnknownSerialError
	for _, tt := range []struct {
		name string
		rep  *reply
		ok   bool
		is   func(error) bool
		msg  string
	}{
		{"signed by A", certsAnswer(t, f.key, []*x509.Certificate{a, b}, f.platformKey, f.v.Serials["platform"]), true, nil, ""},
		{"signed by B", certsAnswer(t, f.key, []*x509.Certificate{a, b}, f.platform2Key, f.v.Serials["platform2"]), true, nil, ""},
		{"signed with the public key the verifier knows", certsAnswer(t, f.key, []*x509.Certificate{a}, nil, ""), true, nil, ""},
		{"signed by a key not listed", certsAnswer(t, f.key, []*x509.Certificate{a}, f.rogueKey, f.v.Serials["rogue"]), false, func(err error) bool { return errors.As(err, &unknown) }, ""},
		{"signed by B, which is not listed", certsAnswer(t, f.key, []*x509.Certificate{a}, f.platform2Key, f.v.Serials["platform2"]), false, func(err error) bool { return errors.As(err, &unknown) }, ""},
		{"signed by an expired listed certificate", certsAnswer(t, f.key, []*x509.Certificate{f.oldCert, a}, f.oldKey, f.v.Serials["platform_old"]), false, func(err error) bool { return errors.As(err, &unknown) }, ""},
		{"listed serial is not the certificate's", mismatch, false, nil, "is not the serial"},
		{"encrypted with another key", certsAnswer(t, APIv3Key(strings.Repeat("y", 32)), []*x509.Certificate{a}, f.platformKey, f.v.Serials["platform"]), false, func(err error) bool { return errors.Is(err, ErrDecrypt) }, ""},
		{"empty list", &reply{status: 200, body: []byte(`{"data":[]}`), signKey: f.platformKey, serial: f.v.Serials["platform"]}, false, nil, "lists no certificate"},
		{"not JSON", &reply{status: 200, body: []byte(`<html>`), signKey: f.platformKey, serial: f.v.Serials["platform"]}, false, nil, "not JSON"},
		{"SIGNTEST", func() *reply {
			r := certsAnswer(t, f.key, []*x509.Certificate{a}, f.platformKey, f.v.Serials["platform"])
			r.signTest = true
			return r
		}(), false, func(err error) bool { return errors.Is(err, ErrSignTest) }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w.handle(func(*seenRequest) *reply { return tt.rep })
			certs, err := w.client().DownloadCertificates(context.Background(), f.key)
			if tt.ok {
				if err != nil || len(certs) == 0 {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if certs != nil || !errors.As(err, &ve) {
				t.Fatalf("err = %v", err)
			}
			if tt.is != nil && !tt.is(err) {
				t.Fatalf("err = %v", err)
			}
			if tt.msg != "" {
				errorContains(t, err, tt.msg)
			}
			errorContains(t, err, "download certificates")
		})
	}
}

// A merchant in public key mode: WeChat answers 404 RESOURCE_NOT_EXISTS.
func TestDownloadCertificatesPublicKeyMerchant(t *testing.T) {
	w := newFakeWeChat(t)
	body := []byte(`{"code":"RESOURCE_NOT_EXISTS","message":"无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥。"}`)
	w.handle(func(*seenRequest) *reply { return &reply{status: 404, body: body} })
	_, err := w.client().DownloadCertificates(context.Background(), w.f.key)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "RESOURCE_NOT_EXISTS" {
		t.Fatalf("err = %v", err)
	}
	// Unsigned, or to a client that does not know the key: not trusted,
	// but the code is there for the log.
	w.handle(func(*seenRequest) *reply { return &reply{status: 404, body: body, unsigned: true} })
	_, err = w.client().DownloadCertificates(context.Background(), w.f.key)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Status != 404 || ve.Code != "RESOURCE_NOT_EXISTS" {
		t.Fatalf("err = %v", err)
	}
	c := w.client()
	c.Verifier = nil
	if _, err = c.DownloadCertificates(context.Background(), w.f.key); !errors.As(err, &ve) {
		t.Fatalf("no verifier: err = %v", err)
	}
}
