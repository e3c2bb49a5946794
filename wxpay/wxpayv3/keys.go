package wxpayv3

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MinRSABits is the smallest RSA key this package accepts: WeChat Pay's
// keys and certificates are RSA-2048.
const MinRSABits = 2048

// ParsePrivateKey reads the merchant's API private key (apiclient_key.pem):
// the first PEM block of type "PRIVATE KEY" (PKCS#8, what WeChat's tool
// writes) or "RSA PRIVATE KEY" (PKCS#1). It refuses a key that is not RSA,
// or has fewer than 2048 bits, naming the problem; its errors never contain
// key material.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	rest := pemBytes
	var seen []string
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("wxpayv3: PKCS#8 private key does not parse: %s", asn1Reason(err))
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("wxpayv3: private key is %s, WeChat Pay needs RSA", keyKind(k))
			}
			return checkPrivate(rk)
		case "RSA PRIVATE KEY":
			rk, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("wxpayv3: PKCS#1 RSA private key does not parse: %s", asn1Reason(err))
			}
			return checkPrivate(rk)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("wxpayv3: private key is encrypted (ENCRYPTED PRIVATE KEY); give it unencrypted, as WeChat's certificate tool writes it")
		case "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "DSA PRIVATE KEY":
			return nil, fmt.Errorf("wxpayv3: PEM block is %q, WeChat Pay needs an RSA key (PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
		}
		seen = append(seen, block.Type)
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("wxpayv3: no PRIVATE KEY or RSA PRIVATE KEY PEM block (found %s)", strings.Join(seen, ", "))
	}
	return nil, errors.New("wxpayv3: no PEM block: expected the contents of apiclient_key.pem")
}

func checkPrivate(k *rsa.PrivateKey) (*rsa.PrivateKey, error) {
	if n := k.N.BitLen(); n < MinRSABits {
		return nil, fmt.Errorf("wxpayv3: RSA private key has %d bits, fewer than the %d WeChat Pay uses", n, MinRSABits)
	}
	return k, nil
}

// ParsePublicKey reads an RSA public key from the first PEM block of type
// "PUBLIC KEY" (PKIX: the WeChat Pay public key file the merchant platform
// hands out), "RSA PUBLIC KEY" (PKCS#1) or "CERTIFICATE" (the key of a
// platform or merchant certificate). It refuses keys that are not RSA or
// have fewer than 2048 bits.
func ParsePublicKey(pemBytes []byte) (*rsa.PublicKey, error) {
	rest := pemBytes
	var seen []string
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var k any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			if c, err = x509.ParseCertificate(block.Bytes); err == nil {
				k = c.PublicKey
			}
		default:
			seen = append(seen, block.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("wxpayv3: %s PEM block does not parse: %v", block.Type, err)
		}
		return rsaPublic(k)
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("wxpayv3: no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM block (found %s)", strings.Join(seen, ", "))
	}
	return nil, errors.New("wxpayv3: no PEM block: expected a WeChat Pay public key (pub_key.pem) or a certificate")
}

// rsaPublic checks that k is an RSA public key of at least MinRSABits.
func rsaPublic(k any) (*rsa.PublicKey, error) {
	pk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("wxpayv3: public key is %s, WeChat Pay uses RSA", keyKind(k))
	}
	if n := pk.N.BitLen(); n < MinRSABits {
		return nil, fmt.Errorf("wxpayv3: RSA public key has %d bits, fewer than the %d WeChat Pay uses", n, MinRSABits)
	}
	return pk, nil
}

// certPublicKey returns the RSA key of a certificate, checked like
// ParsePublicKey's.
func certPublicKey(c *x509.Certificate) (*rsa.PublicKey, error) {
	return rsaPublic(c.PublicKey)
}

func keyKind(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "missing"
	}
	return fmt.Sprintf("%T", k)
}

// asn1Reason describes a parse failure of private key bytes. The errors of
// crypto/x509 and encoding/asn1 name tags and offsets, never content, but
// this keeps only their first line to be sure nothing long is repeated.
func asn1Reason(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// ParseCertificate reads the first PEM block of type "CERTIFICATE".
func ParseCertificate(pemBytes []byte) (*x509.Certificate, error) {
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("wxpayv3: no CERTIFICATE PEM block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("wxpayv3: certificate does not parse: %v", err)
		}
		return c, nil
	}
}

// ParseCertificates reads every certificate of a PEM bundle, in order. A
// block of another type, data that is not PEM after the last block, or a
// bundle without a certificate is an error.
func ParseCertificates(pemBundle []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := pemBundle
	for i := 1; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("wxpayv3: PEM block %d is %q, not a CERTIFICATE", i, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("wxpayv3: certificate %d does not parse: %v", i, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("wxpayv3: %d bytes after the last PEM block are not PEM", len(rest))
	}
	if len(certs) == 0 {
		return nil, errors.New("wxpayv3: no CERTIFICATE PEM block")
	}
	return certs, nil
}

// EncodeCertificates writes certificates as a PEM bundle, the form
// ParseCertificates reads.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// CertificateSerial is a certificate's serial number as WeChat Pay writes
// serials (serial_no, Wechatpay-Serial): uppercase hex without leading
// zeros. Note that `openssl x509 -serial` pads to whole bytes: a serial
// whose first byte is below 0x10 reads "0ABC…" there and "ABC…" here.
func CertificateSerial(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.SerialNumber)
}

// PublicKeyIDPrefix starts the id of every WeChat Pay public key
// (微信支付公钥ID), e.g. "PUB_KEY_ID_0114…". The prefix is part of the id.
const PublicKeyIDPrefix = "PUB_KEY_ID_"

// CheckPublicKeyID checks the shape of a WeChat Pay public key id: it must
// start with PublicKeyIDPrefix (which is part of the id: keep it) and have
// something after it, without spaces or control characters (a trace of
// copying and pasting). Its length is deliberately not checked: WeChat's
// documents say 32 digits where real ids have more.
func CheckPublicKeyID(id string) error {
	if !strings.HasPrefix(id, PublicKeyIDPrefix) {
		return fmt.Errorf("wxpayv3: public key id %s does not start with %s (copy the whole id from the merchant platform, prefix included)", quoteShort(id), PublicKeyIDPrefix)
	}
	if len(id) == len(PublicKeyIDPrefix) {
		return fmt.Errorf("wxpayv3: public key id is only the prefix %s", PublicKeyIDPrefix)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f || c == '"' {
			return fmt.Errorf("wxpayv3: public key id %s has a space, quote or control character at byte %d", quoteShort(id), i+1)
		}
	}
	return nil
}

// APIv3Key is the merchant's APIv3 key (APIv3密钥, set under 账户中心 →
// API安全): 32 bytes that key the AES-256-GCM of notifications and platform
// certificates. It never prints itself: formatted (fmt), encoded (JSON,
// text) or logged by mistake it reads [REDACTED]. Convert it to a string
// or []byte explicitly where the key itself is needed.
type APIv3Key string

// redacted is what a secret shows of itself.
const redacted = "[REDACTED]"

// String hides the key.
func (APIv3Key) String() string { return redacted }

// GoString hides the key.
func (APIv3Key) GoString() string { return "wxpayv3.APIv3Key([REDACTED])" }

// Format hides the key from every fmt verb, %d and %x included (String
// alone leaves %d printing the bytes).
func (k APIv3Key) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, k.GoString())
		return
	}
	io.WriteString(f, redacted)
}

// MarshalText hides the key from encoders (encoding/json, log/slog, zap's
// reflection, YAML…).
func (APIv3Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Validate checks the key's shape without revealing it: an APIv3 key is
// exactly 32 bytes (AES-256).
func (k APIv3Key) Validate() error {
	if len(k) == 0 {
		return errors.New("wxpayv3: APIv3 key is empty")
	}
	if len(k) != 32 {
		return fmt.Errorf("wxpayv3: APIv3 key has %d bytes, WeChat Pay APIv3 keys have 32 (copied with a space or a line break, or cut short?)", len(k))
	}
	return nil
}
