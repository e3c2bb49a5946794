package wxpayv3

import (
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The headers of a signed answer or notification.
const (
	HeaderTimestamp     = "Wechatpay-Timestamp"      // decimal Unix seconds
	HeaderNonce         = "Wechatpay-Nonce"          // a random string
	HeaderSignature     = "Wechatpay-Signature"      // base64 SHA256withRSA of TIMESTAMP\nNONCE\nBODY\n
	HeaderSerial        = "Wechatpay-Serial"         // the key that signed: a public key id or a platform certificate serial
	HeaderSignatureType = "Wechatpay-Signature-Type" // AuthScheme
	HeaderRequestID     = "Request-ID"               // WeChat's id of the exchange, for its support
)

// signTestPrefix starts the Wechatpay-Signature of WeChat's probes.
const signTestPrefix = "WECHATPAY/SIGNTEST/"

// DefaultWindow is how far a Wechatpay-Timestamp may be from now, either
// way, when Verifier.Window is zero: WeChat's documented 5 minutes.
const DefaultWindow = 5 * time.Minute

// KeySource finds the WeChat Pay key that a Wechatpay-Serial names.
// Implementations must be safe for concurrent use.
type KeySource interface {
	// VerificationKey returns the key serial names, and whether there is
	// one. serial is matched as a whole, exactly.
	VerificationKey(serial string) (*rsa.PublicKey, bool)
}

// KeySet is a fixed set of verification keys by serial: the WeChat Pay
// public key under its id (PUB_KEY_ID_…), platform certificate keys under
// their serials. It is immutable and safe for concurrent use.
type KeySet struct {
	keys map[string]*rsa.PublicKey
}

// NewKeySet returns a KeySet of a copy of keys; nil keys are left out.
func NewKeySet(keys map[string]*rsa.PublicKey) *KeySet {
	m := make(map[string]*rsa.PublicKey, len(keys))
	for s, k := range keys {
		if k != nil {
			m[s] = k
		}
	}
	return &KeySet{keys: m}
}

// VerificationKey returns the key stored under exactly serial.
func (s *KeySet) VerificationKey(serial string) (*rsa.PublicKey, bool) {
	if s == nil {
		return nil, false
	}
	k, ok := s.keys[serial]
	return k, ok
}

// Serials returns the serials of the set, sorted.
func (s *KeySet) Serials() []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.keys))
}

// KeySources asks each of its sources in turn; the first that knows a
// serial answers. It serves the migration from platform certificates to
// the WeChat Pay public key, when answers and notifications come signed
// with either: KeySources{publicKeySet, platformCertificates}.
type KeySources []KeySource

// VerificationKey returns the key of the first source that knows serial.
func (ks KeySources) VerificationKey(serial string) (*rsa.PublicKey, bool) {
	for _, s := range ks {
		if s == nil {
			continue
		}
		if k, ok := s.VerificationKey(serial); ok {
			return k, true
		}
	}
	return nil, false
}

// Verifier checks the signature of WeChat's answers and notifications. It
// is safe for concurrent use when Keys is.
type Verifier struct {
	// Keys finds the key that Wechatpay-Serial names.
	Keys KeySource
	// Window is how far Wechatpay-Timestamp may be from now, either way;
	// DefaultWindow (5 minutes) when zero.
	Window time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (v *Verifier) window() time.Duration {
	if v.Window <= 0 {
		return DefaultWindow
	}
	return v.Window
}

func (v *Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// Verify checks that body, the exact bytes received, was signed by WeChat:
// in this order,
//
//   - Wechatpay-Timestamp, -Nonce, -Signature and -Serial are all present
//     and non-empty, else *MissingHeaderError;
//   - the signature is not a WECHATPAY/SIGNTEST/ probe, else ErrSignTest;
//   - the timestamp is decimal Unix seconds within Window of now, else
//     *TimestampError;
//   - Keys knows the serial, else *UnknownSerialError;
//   - the signature of TIMESTAMP\nNONCE\nBODY\n verifies with that key,
//     else an error wrapping ErrBadSignature.
//
// The body must be the raw bytes: verifying a re-encoded body fails.
func (v *Verifier) Verify(h http.Header, body []byte) error {
	if v == nil {
		return errors.New("wxpayv3: no verifier configured: cannot verify")
	}
	var vals [4]string
	for i, name := range [4]string{HeaderTimestamp, HeaderNonce, HeaderSignature, HeaderSerial} {
		if vals[i] = h.Get(name); vals[i] == "" {
			return &MissingHeaderError{Name: name}
		}
	}
	ts, nonce, sig, serial := vals[0], vals[1], vals[2], vals[3]
	if strings.HasPrefix(sig, signTestPrefix) {
		return ErrSignTest
	}
	sec, ok := parseUnix(ts)
	if !ok {
		return &TimestampError{Timestamp: ts, Malformed: true}
	}
	win := v.window()
	skew := v.now().Sub(time.Unix(sec, 0))
	if skew > win || skew < -win {
		return &TimestampError{Timestamp: ts, Skew: skew, Window: win}
	}
	if v.Keys == nil {
		return &UnknownSerialError{Serial: serial}
	}
	pub, ok := v.Keys.VerificationKey(serial)
	if !ok || pub == nil {
		return &UnknownSerialError{Serial: serial}
	}
	d := sha256.New()
	d.Write([]byte(ts))
	d.Write([]byte{'\n'})
	d.Write([]byte(nonce))
	d.Write([]byte{'\n'})
	d.Write(body)
	d.Write([]byte{'\n'})
	if err := verifyDigest(pub, d.Sum(nil), sig); err != nil {
		if st := h.Get(HeaderSignatureType); st != "" && st != AuthScheme {
			return fmt.Errorf("%w (Wechatpay-Signature-Type is %s, only %s is supported)", err, quoteShort(st), AuthScheme)
		}
		return err
	}
	return nil
}

// parseUnix reads decimal Unix seconds: digits only, no sign, at most 12
// of them (the year 33658), so that nothing overflows.
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > 12 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// IsV3Request reports whether a request carries a Wechatpay-Signature
// header, even an empty one: an APIv3 notification (JSON, signed in its
// headers) rather than an API v2 one (XML, signed in its body).
func IsV3Request(h http.Header) bool {
	return len(h.Values(HeaderSignature)) > 0
}
