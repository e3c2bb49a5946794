package wxpayv3

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// AuthScheme is the scheme of the Authorization header of APIv3 requests,
// and the value of Wechatpay-Signature-Type: SHA256withRSA over RSA-2048.
const AuthScheme = "WECHATPAY2-SHA256-RSA2048"

// Message builds a signed message of APIv3: each part followed by "\n",
// the last one included. A request signs
// Message(method, pathAndQuery, timestamp, nonce, body); an answer or
// notification Message(timestamp, nonce, body); JSAPI pay parameters
// Message(appId, timeStamp, nonceStr, "prepay_id=…").
func Message(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range parts {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return b.String()
}

// SignSHA256WithRSA signs message with SHA256withRSA (RSASSA-PKCS1-v1_5
// over SHA-256) and returns the signature in standard base64. The
// signature of a given key and message is always the same.
func SignSHA256WithRSA(key *rsa.PrivateKey, message string) (string, error) {
	if key == nil {
		return "", errors.New("wxpayv3: sign: no private key")
	}
	d := sha256.Sum256([]byte(message))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		return "", fmt.Errorf("wxpayv3: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// VerifySHA256WithRSA checks a standard base64 SHA256withRSA signature of
// message. A signature that is not base64 or does not verify is
// ErrBadSignature.
func VerifySHA256WithRSA(pub *rsa.PublicKey, message, signature string) error {
	d := sha256.Sum256([]byte(message))
	return verifyDigest(pub, d[:], signature)
}

func verifyDigest(pub *rsa.PublicKey, digest []byte, signature string) error {
	if pub == nil {
		return errors.New("wxpayv3: verify: no public key")
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return fmt.Errorf("%w: not standard base64", ErrBadSignature)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig); err != nil {
		return ErrBadSignature
	}
	return nil
}

// Signer signs APIv3 requests for one merchant.
type Signer struct {
	// MchID is the merchant number (商户号).
	MchID string
	// Serial is the serial number of the merchant's API certificate
	// (apiclient_cert.pem), uppercase hex: see CertificateSerial.
	Serial string
	// Key is the merchant's API private key (apiclient_key.pem).
	Key *rsa.PrivateKey
}

// Authorization returns the Authorization header of a request:
//
//	WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"
//
// signing METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n. pathAndQuery is the
// request target exactly as sent (escaped path, "?" and the query when
// there is one); body is the exact bytes sent, empty for a GET.
func (s *Signer) Authorization(method, pathAndQuery string, body []byte, timestamp int64, nonce string) (string, error) {
	if s == nil || s.Key == nil {
		return "", errors.New("wxpayv3: signer has no private key")
	}
	if err := checkAuthValue("mchid", s.MchID); err != nil {
		return "", err
	}
	if err := checkAuthValue("serial_no", s.Serial); err != nil {
		return "", err
	}
	if err := checkAuthValue("nonce_str", nonce); err != nil {
		return "", err
	}
	if method == "" || strings.ContainsAny(method, " \n") {
		return "", fmt.Errorf("wxpayv3: invalid method %s", quoteShort(method))
	}
	if !strings.HasPrefix(pathAndQuery, "/") || strings.ContainsAny(pathAndQuery, " \n") {
		return "", fmt.Errorf("wxpayv3: request target %s is not an absolute path", quoteShort(pathAndQuery))
	}
	ts := strconv.FormatInt(timestamp, 10)
	sig, err := SignSHA256WithRSA(s.Key, Message(method, pathAndQuery, ts, nonce, string(body)))
	if err != nil {
		return "", err
	}
	a := Authorization{MchID: s.MchID, NonceStr: nonce, Timestamp: ts, SerialNo: s.Serial, Signature: sig}
	return a.String(), nil
}

// checkAuthValue refuses what cannot stand between the quotes of an
// Authorization field.
func checkAuthValue(name, v string) error {
	if v == "" {
		return fmt.Errorf("wxpayv3: Authorization field %s is empty", name)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == '"' || c == 0x7f {
			return fmt.Errorf("wxpayv3: Authorization field %s has a quote or control character", name)
		}
	}
	return nil
}

// Authorization is the content of an APIv3 Authorization header.
type Authorization struct {
	MchID     string // mchid
	NonceStr  string // nonce_str
	Timestamp string // timestamp, decimal Unix seconds
	SerialNo  string // serial_no: the merchant certificate's serial
	Signature string // signature, standard base64
}

// String formats the header, fields in the order WeChat's documents show.
func (a *Authorization) String() string {
	return AuthScheme + ` mchid="` + a.MchID + `",nonce_str="` + a.NonceStr + `",timestamp="` + a.Timestamp +
		`",serial_no="` + a.SerialNo + `",signature="` + a.Signature + `"`
}

// VerifyRequest checks the signature of a request that carried this
// Authorization, with the public key of the merchant certificate SerialNo
// names: the check WeChat makes, for simulators. pathAndQuery is the
// request target as received (http.Request.RequestURI), body the raw bytes.
func (a *Authorization) VerifyRequest(pub *rsa.PublicKey, method, pathAndQuery string, body []byte) error {
	h := sha256.New()
	for _, p := range []string{method, pathAndQuery, a.Timestamp, a.NonceStr} {
		h.Write([]byte(p))
		h.Write([]byte{'\n'})
	}
	h.Write(body)
	h.Write([]byte{'\n'})
	return verifyDigest(pub, h.Sum(nil), a.Signature)
}

// ParseAuthorization reads an APIv3 Authorization header, strictly: the
// scheme WECHATPAY2-SHA256-RSA2048 followed by a space, then the five fields
// mchid, nonce_str, timestamp, serial_no and signature, in any order,
// each exactly once, as name="value" (no escapes: a value cannot hold a
// quote), separated by commas with optional spaces around them. A value
// may not be empty or hold control characters; an unknown field is an
// error.
func ParseAuthorization(header string) (*Authorization, error) {
	rest, ok := strings.CutPrefix(header, AuthScheme+" ")
	if !ok {
		scheme, _, _ := strings.Cut(header, " ")
		return nil, fmt.Errorf("wxpayv3: Authorization scheme is %s, want %s", quoteShort(scheme), AuthScheme)
	}
	var a Authorization
	var seen [5]bool
	for {
		rest = strings.TrimLeft(rest, " \t")
		eq := strings.IndexByte(rest, '=')
		if eq < 0 {
			return nil, fmt.Errorf("wxpayv3: Authorization: expected name=\"value\" at %s", quoteShort(rest))
		}
		name := rest[:eq]
		var field *string
		var i int
		switch name {
		case "mchid":
			field, i = &a.MchID, 0
		case "nonce_str":
			field, i = &a.NonceStr, 1
		case "timestamp":
			field, i = &a.Timestamp, 2
		case "serial_no":
			field, i = &a.SerialNo, 3
		case "signature":
			field, i = &a.Signature, 4
		default:
			return nil, fmt.Errorf("wxpayv3: Authorization: unknown field %s", quoteShort(name))
		}
		if seen[i] {
			return nil, fmt.Errorf("wxpayv3: Authorization: field %s appears twice", name)
		}
		seen[i] = true
		rest = rest[eq+1:]
		if !strings.HasPrefix(rest, `"`) {
			return nil, fmt.Errorf("wxpayv3: Authorization: value of %s is not quoted", name)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("wxpayv3: Authorization: value of %s has no closing quote", name)
		}
		v := rest[1 : 1+end]
		if v == "" {
			return nil, fmt.Errorf("wxpayv3: Authorization: value of %s is empty", name)
		}
		for j := 0; j < len(v); j++ {
			if c := v[j]; c < ' ' || c == 0x7f {
				return nil, fmt.Errorf("wxpayv3: Authorization: value of %s has a control character", name)
			}
		}
		*field = v
		rest = strings.TrimLeft(rest[2+end:], " \t")
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("wxpayv3: Authorization: expected a comma after %s, found %s", name, quoteShort(rest))
		}
		rest = rest[1:]
	}
	for i, name := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
		if !seen[i] {
			return nil, fmt.Errorf("wxpayv3: Authorization: field %s is missing", name)
		}
	}
	return &a, nil
}

// NonceStr returns a random nonce of 32 letters and digits from
// crypto/rand, for nonce_str and the nonceStr of pay parameters.
func NonceStr() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	const limit = 256 - 256%len(alphabet) // bytes at or above are rejected: no bias
	var out [32]byte
	var buf [48]byte
	n := 0
	for n < len(out) {
		rand.Read(buf[:]) // never fails; it aborts the program when it cannot read
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out[n] = alphabet[int(b)%len(alphabet)]
			if n++; n == len(out) {
				break
			}
		}
	}
	return string(out[:])
}
