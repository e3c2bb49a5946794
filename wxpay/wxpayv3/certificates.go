package wxpayv3

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"
)

// EncryptedCertificate is one platform certificate of the answer of
// GET /v3/certificates.
type EncryptedCertificate struct {
	SerialNo           string   `json:"serial_no"`
	EffectiveTime      string   `json:"effective_time"`
	ExpireTime         string   `json:"expire_time"`
	EncryptCertificate Resource `json:"encrypt_certificate"` // the PEM certificate, encrypted with the APIv3 key
}

// DownloadCertificates downloads the platform certificates (平台证书):
// GET /v3/certificates, each certificate decrypted with the APIv3 key. The
// answer is not trusted blindly: it must verify with one of the
// certificates it lists (valid now) or with a key of c.Verifier, and each
// listed serial_no must be the serial of the certificate it carries;
// otherwise the answer is a *VerifyError. Certificates are returned in the
// answer's order, expired ones included.
//
// A merchant in public-key mode has no platform certificates: WeChat then
// answers 404 RESOURCE_NOT_EXISTS, returned as the *APIError when the
// answer verifies with c.Verifier (else as a *VerifyError whose Code says
// it).
func (c *Client) DownloadCertificates(ctx context.Context, key APIv3Key) ([]*x509.Certificate, error) {
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("download certificates: %w", err)
	}
	const path = "/v3/certificates"
	op := http.MethodGet + " " + path
	ans, err := c.exchangeFailover(ctx, op, http.MethodGet, path, nil, true)
	if err != nil {
		return nil, fmt.Errorf("download certificates: %w", err)
	}
	base := &Verifier{}
	if c.Verifier != nil {
		// Without waiting for a download: this is one.
		base = &Verifier{Keys: passiveKeys{c.Verifier.Keys}, Window: c.Verifier.Window, Now: c.Verifier.Now}
	}
	var certs []*x509.Certificate
	verify := func(h http.Header, body []byte) error {
		if ans.status < 200 || ans.status > 299 {
			// An error answer lists no certificate to verify it with.
			return base.Verify(h, body)
		}
		var err error
		if certs, err = decryptCertificates(key, body); err != nil {
			return err
		}
		now := base.now()
		listed := make(map[string]*rsa.PublicKey, len(certs))
		for _, cert := range certs {
			if validAt(cert, now) {
				listed[CertificateSerial(cert)] = cert.PublicKey.(*rsa.PublicKey)
			}
		}
		v := &Verifier{Keys: KeySources{NewKeySet(listed), base.Keys}, Window: base.Window, Now: base.Now}
		return v.Verify(h, body)
	}
	if err := finish(op, ans, verify, nil); err != nil {
		return nil, fmt.Errorf("download certificates: %w", err)
	}
	return certs, nil
}

// decryptCertificates decodes and decrypts the body of a /v3/certificates
// answer, checking each certificate against its listed serial.
func decryptCertificates(key APIv3Key, body []byte) ([]*x509.Certificate, error) {
	var doc struct {
		Data []EncryptedCertificate `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("certificates answer is not JSON: %v", err)
	}
	if len(doc.Data) == 0 {
		return nil, errors.New("certificates answer lists no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(doc.Data))
	for i := range doc.Data {
		ec := &doc.Data[i]
		pemBytes, err := DecryptResource(key, &ec.EncryptCertificate)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (serial_no %s): %w", i+1, quoteShort(ec.SerialNo), err)
		}
		cert, err := ParseCertificate(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (serial_no %s): %w", i+1, quoteShort(ec.SerialNo), err)
		}
		if _, err := certPublicKey(cert); err != nil {
			return nil, fmt.Errorf("certificate %d (serial_no %s): %w", i+1, quoteShort(ec.SerialNo), err)
		}
		// Compared as numbers: a listed serial may or may not keep a
		// leading zero.
		listed, ok := new(big.Int).SetString(ec.SerialNo, 16)
		if !ok || listed.Cmp(cert.SerialNumber) != 0 {
			return nil, fmt.Errorf("certificate %d: serial_no %s is not the serial %s of the certificate it carries", i+1, quoteShort(ec.SerialNo), CertificateSerial(cert))
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// validAt reports whether now is within the certificate's validity.
func validAt(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}

// passiveKeys looks keys up without starting or waiting for a download of
// platform certificates: the download's own answer must not wait for
// itself.
type passiveKeys struct{ KeySource }

func (pk passiveKeys) VerificationKey(serial string) (*rsa.PublicKey, bool) {
	return passiveLookup(pk.KeySource, serial)
}

func passiveLookup(ks KeySource, serial string) (*rsa.PublicKey, bool) {
	switch k := ks.(type) {
	case nil:
		return nil, false
	case KeySources:
		for _, s := range k {
			if key, ok := passiveLookup(s, serial); ok {
				return key, true
			}
		}
		return nil, false
	case *PlatformCertificates:
		return k.lookup(serial)
	case passiveKeys:
		return passiveLookup(k.KeySource, serial)
	}
	return ks.VerificationKey(serial)
}
