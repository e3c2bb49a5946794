package wxpay

import (
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// SignType names an API v2 signature algorithm.
type SignType string

// The API v2 signature algorithms.
const (
	// SignTypeMD5 is MD5 over the canonical string; WeChat's default when a
	// document carries no sign_type.
	SignTypeMD5 SignType = "MD5"
	// SignTypeHMACSHA256 is HMAC-SHA256 over the same canonical string
	// (its "&key=…" suffix included), keyed with the API key.
	SignTypeHMACSHA256 SignType = "HMAC-SHA256"
)

// ParseSignType returns the sign type that s names. The empty string is MD5,
// as in WeChat's documents.
func ParseSignType(s string) (SignType, error) {
	switch s {
	case "", string(SignTypeMD5):
		return SignTypeMD5, nil
	case string(SignTypeHMACSHA256):
		return SignTypeHMACSHA256, nil
	}
	return "", fmt.Errorf("unknown sign_type %q (want MD5 or HMAC-SHA256)", s)
}

// APIKey is a merchant's API v2 key (the 32 characters set under 账户设置 →
// API安全). It never prints itself: formatted (fmt), encoded (JSON, text)
// or logged (zap, which uses these) by mistake, it reads [REDACTED], so that
// a key that slips into a log, an error or a dump stays secret. Convert it
// to a string explicitly where the key itself is needed.
type APIKey string

// redacted is what an APIKey shows of itself.
const redacted = "[REDACTED]"

// String hides the key.
func (APIKey) String() string { return redacted }

// GoString hides the key.
func (APIKey) GoString() string { return "wxpay.APIKey([REDACTED])" }

// MarshalText hides the key from encoders (encoding/json, zap's reflection,
// YAML…).
func (APIKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Validate checks the key's shape without revealing it: WeChat's keys are
// exactly 32 ASCII letters and digits.
func (k APIKey) Validate() error {
	if len(k) == 0 {
		return errors.New("api key is empty")
	}
	if len(k) != 32 {
		return fmt.Errorf("api key has %d characters, WeChat Pay keys have 32", len(k))
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return fmt.Errorf("api key has a character that is not a letter or digit at position %d", i+1)
		}
	}
	return nil
}

// Errors of signing and verification.
var (
	// ErrMissingSign means a document that must be signed carries no sign.
	ErrMissingSign = errors.New("wxpay: document has no sign")
	// ErrInvalidSignature means a document's sign does not match its fields.
	ErrInvalidSignature = errors.New("wxpay: signature does not verify")
	// ErrDuplicateField means a document names one field twice, which
	// makes its signature ambiguous.
	ErrDuplicateField = errors.New("wxpay: duplicate field")
)

// Sign returns the API v2 signature of p: every field with a non-empty value
// except sign, sorted by name in byte order, joined as k=v with &, followed by
// &key=<key>, then MD5 or HMAC-SHA256 (keyed with key), in uppercase hex.
// Values are used as the exact bytes given, without escaping.
func Sign(p Params, key APIKey, st SignType) (string, error) {
	sum, n, err := signature(p, key, st)
	if err != nil {
		return "", err
	}
	return string(sum[:n]), nil
}

// Verify checks the sign field of p against its other fields, in constant
// time, with the given sign type.
func Verify(p Params, key APIKey, st SignType) error {
	got, ok := p.Lookup("sign")
	if !ok || got == "" {
		return ErrMissingSign
	}
	want, n, err := signature(p, key, st)
	if err != nil {
		return err
	}
	if !constantTimeEqual(want[:n], got) {
		return ErrInvalidSignature
	}
	return nil
}

// DocumentSignType returns the sign type a received document names in its
// sign_type field, MD5 when it names none.
func DocumentSignType(p Params) (SignType, error) {
	return ParseSignType(p.Get("sign_type"))
}

// NotificationSignType returns the sign type of a payment notification:
// the one its sign_type names or, when it names none, the one its sign's
// length says (64 hex digits: HMAC-SHA256; otherwise MD5). WeChat signs an
// order's notifications with the sign type the order was placed with, and
// the notifications of an order placed with HMAC-SHA256 arrive without
// sign_type (WxJava #1585, #1633, #1671 quote such bodies): read as MD5,
// every one of them would be refused. Either way the sign is verified over
// every field received, so the length only picks the algorithm; it proves
// nothing by itself.
func NotificationSignType(p Params) (SignType, error) {
	if label := p.Get("sign_type"); label != "" {
		return ParseSignType(label)
	}
	if len(p.Get("sign")) == 2*sha256.Size {
		return SignTypeHMACSHA256, nil
	}
	return SignTypeMD5, nil
}

// constantTimeEqual compares a computed signature with a received one. Its
// running time depends on the lengths only, which are public.
func constantTimeEqual(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// maxStackFields bounds the fields sorted without allocating; documents
// with more fall back to the heap.
const maxStackFields = 48

// signature computes the uppercase hex signature into a fixed buffer so that
// signing and verifying allocate nothing on the common path.
func signature(p Params, key APIKey, st SignType) (sum [64]byte, n int, err error) {
	var idxStack [maxStackFields]int
	idx := idxStack[:0]
	for i := range p {
		if p[i].Value == "" || p[i].Name == "sign" {
			continue
		}
		idx = append(idx, i)
	}
	// Insertion sort: documents have a few dozen fields at most, and it
	// sorts in place without the allocation of sort.Slice. Fields that
	// already come in order (as the pay parameters do) cost one comparison
	// each. Most names differ in their first byte, which decides without
	// a call to the runtime's string comparison. The field each insertion
	// stops at is the greatest not above the one inserted, so a duplicate
	// name is always met there.
	for i := 1; i < len(idx); i++ {
		x := idx[i]
		a := p[x].Name
		j := i
		for ; j > 0; j-- {
			y := idx[j-1]
			b := p[y].Name
			if len(a) > 0 && len(b) > 0 && a[0] != b[0] {
				if b[0] < a[0] {
					break
				}
			} else if c := strings.Compare(b, a); c <= 0 {
				if c == 0 {
					return sum, 0, fmt.Errorf("%w %q", ErrDuplicateField, a)
				}
				break
			}
			idx[j] = y
		}
		idx[j] = x
	}

	var bufStack [1024]byte
	buf := bufStack[:0]
	const block = 64 // SHA-256 block size
	var hkey [block]byte
	switch st {
	case SignTypeMD5:
	case SignTypeHMACSHA256:
		if len(key) > block {
			h := sha256.Sum256([]byte(key))
			copy(hkey[:], h[:])
		} else {
			copy(hkey[:], key)
		}
		// Reserve the inner pad in front of the message.
		for i := 0; i < block; i++ {
			buf = append(buf, hkey[i]^0x36)
		}
	default:
		return sum, 0, fmt.Errorf("wxpay: cannot sign with sign_type %q", st)
	}
	for _, i := range idx {
		buf = append(buf, p[i].Name...)
		buf = append(buf, '=')
		buf = append(buf, p[i].Value...)
		buf = append(buf, '&')
	}
	buf = append(buf, "key="...)
	buf = append(buf, key...)

	if st == SignTypeMD5 {
		d := md5.Sum(buf)
		return hexUpper(d[:]), 2 * len(d), nil
	}
	// HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)), RFC 2104.
	inner := sha256.Sum256(buf)
	var outer [block + sha256.Size]byte
	for i := 0; i < block; i++ {
		outer[i] = hkey[i] ^ 0x5c
	}
	copy(outer[block:], inner[:])
	d := sha256.Sum256(outer[:])
	return hexUpper(d[:]), 2 * len(d), nil
}

func hexUpper(b []byte) (out [64]byte) {
	const digits = "0123456789ABCDEF"
	for i, c := range b {
		out[2*i] = digits[c>>4]
		out[2*i+1] = digits[c&0x0f]
	}
	return out
}
