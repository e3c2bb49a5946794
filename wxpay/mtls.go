package wxpay

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/crypto/pkcs12"
)

// WeChat's /secapi/ calls (refund, reverse, downloadfundflow…) are made over
// mutual TLS with the merchant's API client certificate (API证书), which the
// merchant platform hands out as apiclient_cert.pem + apiclient_key.pem, or
// as apiclient_cert.p12 whose password is the mch_id.

// ErrNoClientCertificate means a /secapi/ call was made with a Client that
// has no TLSHTTPClient.
var ErrNoClientCertificate = errors.New("no TLSHTTPClient set: /secapi/ calls need the merchant's API client certificate (apiclient_cert.pem and apiclient_key.pem, or apiclient_cert.p12), see NewMTLSHTTPClient")

// LoadClientCertificate loads the merchant's API client certificate from
// apiclient_cert.pem and apiclient_key.pem (PKCS#1, PKCS#8 or SEC 1 key).
// Its errors never carry key material.
func LoadClientCertificate(certPEM, keyPEM []byte) (tls.Certificate, error) {
	// crypto/tls's errors name PEM block types and what does not match,
	// never the bytes.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("wxpay: client certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("wxpay: client certificate: %w", err)
		}
	}
	return cert, nil
}

// LoadPKCS12 loads the merchant's API client certificate from
// apiclient_cert.p12, whose password is the merchant's mch_id. The file may
// also carry CA certificates; the one whose key is in the file is the
// client certificate. Errors never carry the password or key material.
//
// Like the files WeChat hands out, the file must use the legacy PKCS#12
// algorithms (3DES or RC2 with a SHA-1 MAC); re-export a file written by
// OpenSSL 3's defaults with "openssl pkcs12 -export -legacy".
func LoadPKCS12(data []byte, mchID string) (tls.Certificate, error) {
	blocks, err := pkcs12.ToPEM(data, mchID)
	if err != nil {
		var nie pkcs12.NotImplementedError
		switch {
		case errors.Is(err, pkcs12.ErrIncorrectPassword):
			return tls.Certificate{}, errors.New("wxpay: apiclient_cert.p12: wrong password (it is the merchant's mch_id)")
		case errors.As(err, &nie) && (strings.Contains(string(nie), "algorithm") || strings.Contains(string(nie), "digest")):
			return tls.Certificate{}, fmt.Errorf("wxpay: apiclient_cert.p12: %w (a file written with OpenSSL 3's defaults must be re-exported with openssl pkcs12 -export -legacy)", err)
		}
		return tls.Certificate{}, fmt.Errorf("wxpay: apiclient_cert.p12: %w", err)
	}
	var (
		key   crypto.Signer
		certs []*x509.Certificate
	)
	for _, b := range blocks {
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return tls.Certificate{}, fmt.Errorf("wxpay: apiclient_cert.p12: %w", err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY":
			if key != nil {
				return tls.Certificate{}, errors.New("wxpay: apiclient_cert.p12: holds more than one private key")
			}
			// pkcs12.ToPEM writes RSA keys as PKCS#1 and ECDSA keys as
			// SEC 1 under this type; x509's errors carry no key bytes.
			if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
				key = k
			} else if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
				key = k
			} else {
				return tls.Certificate{}, errors.New("wxpay: apiclient_cert.p12: private key is neither RSA nor ECDSA")
			}
		}
	}
	if key == nil {
		return tls.Certificate{}, errors.New("wxpay: apiclient_cert.p12: holds no private key")
	}
	leaf := -1
	for i, c := range certs {
		if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(key.Public()) {
			leaf = i
			break
		}
	}
	if leaf < 0 {
		return tls.Certificate{}, errors.New("wxpay: apiclient_cert.p12: holds no certificate for its private key")
	}
	out := tls.Certificate{PrivateKey: key, Leaf: certs[leaf]}
	out.Certificate = append(out.Certificate, certs[leaf].Raw)
	for i, c := range certs {
		if i != leaf {
			out.Certificate = append(out.Certificate, c.Raw)
		}
	}
	return out, nil
}

// NewMTLSHTTPClient returns an HTTP client for WeChat's /secapi/ calls: a
// client from NewHTTPClient(maxConcurrent) that presents cert whenever the
// server asks for a client certificate. It trusts Go's default roots (the
// system's, which SSL_CERT_FILE and SSL_CERT_DIR can replace), never a
// bundle of its own.
//
// The certificate is sent even when the server's list of acceptable CAs
// does not name its issuer: sending none would only turn into a refusal
// that is harder to diagnose.
func NewMTLSHTTPClient(cert tls.Certificate, maxConcurrent int) *http.Client {
	hc := NewHTTPClient(maxConcurrent)
	tr := hc.Transport.(*http.Transport)
	tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &cert, nil
	}
	return hc
}

// tlsHTTPClient returns the client for /secapi/ calls.
func (c *Client) tlsHTTPClient(op string) (*http.Client, error) {
	if c.TLSHTTPClient == nil {
		return nil, fmt.Errorf("wxpay %s: %w", op, ErrNoClientCertificate)
	}
	return c.TLSHTTPClient, nil
}
