package wxpayv3

import (
	"crypto/rsa"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testKeys is the key source of the vectors: the WeChat Pay public key
// under its id and platform certificate A under its serial.
func testKeys(f *fixture) KeySource {
	return KeySources{
		NewKeySet(map[string]*rsa.PublicKey{f.v.PublicKeyID: f.wechatPub}),
		NewKeySet(map[string]*rsa.PublicKey{f.v.Serials["platform"]: &f.platformKey.PublicKey}),
	}
}

// The answer vectors were signed by Python's cryptography over
// TIMESTAMP\nNONCE\nBODY\n (checked with openssl), with the WeChat Pay
// public key's private half or platform certificate A's key.
func TestVerifyAnswerVectors(t *testing.T) {
	f := fx(t)
	for _, v := range f.v.AnswerSigns {
		t.Run(v.Name, func(t *testing.T) {
			if got := Message(itoa(v.Timestamp), v.Nonce, v.Body); got != v.Message {
				t.Fatalf("message %q, want %q", got, v.Message)
			}
			h := signedBody{Body: v.Body, Timestamp: v.Timestamp, Nonce: v.Nonce, Serial: v.Serial, Signature: v.Signature}.header()
			ver := &Verifier{Keys: testKeys(f), Now: func() time.Time { return time.Unix(v.Timestamp, 0) }}
			if err := ver.Verify(h, []byte(v.Body)); err != nil {
				t.Fatal(err)
			}
			// A body with one more byte, or re-encoded, does not verify.
			if err := ver.Verify(h, []byte(v.Body+"\n")); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("altered body: %v", err)
			}
		})
	}
}

func TestVerifyChecksInOrder(t *testing.T) {
	f := fx(t)
	v := f.v.AnswerSigns[0]
	base := signedBody{Body: v.Body, Timestamp: v.Timestamp, Nonce: v.Nonce, Serial: v.Serial, Signature: v.Signature}
	now := time.Unix(v.Timestamp, 0)
	with := func(change func(h http.Header)) http.Header {
		h := base.header()
		change(h)
		return h
	}
	var (
		missing *MissingHeaderError
		stale   *TimestampError
		unknown *UnknownSerialError
	)
	isMissing := func(name string) func(error) bool {
		return func(err error) bool { return errors.As(err, &missing) && missing.Name == name }
	}
	isStale := func(err error) bool { return errors.As(err, &stale) && !stale.Malformed }
	isMalformed := func(err error) bool { return errors.As(err, &stale) && stale.Malformed }
	isUnknown := func(err error) bool { return errors.As(err, &unknown) }
	isSignTest := func(err error) bool { return errors.Is(err, ErrSignTest) }
	isBad := func(err error) bool { return errors.Is(err, ErrBadSignature) }
	signTest := "WECHATPAY/SIGNTEST/" + v.Signature

	for _, tt := range []struct {
		name string
		h    http.Header
		body string
		want func(error) bool
		msg  string
	}{
		{"good", base.header(), v.Body, nil, ""},
		{"no timestamp", with(func(h http.Header) { h.Del(HeaderTimestamp) }), v.Body, isMissing(HeaderTimestamp), "Wechatpay-Timestamp is missing"},
		{"empty nonce", with(func(h http.Header) { h.Set(HeaderNonce, "") }), v.Body, isMissing(HeaderNonce), "Wechatpay-Nonce"},
		{"no signature", with(func(h http.Header) { h.Del(HeaderSignature) }), v.Body, isMissing(HeaderSignature), "Wechatpay-Signature"},
		{"no serial", with(func(h http.Header) { h.Del(HeaderSerial) }), v.Body, isMissing(HeaderSerial), "Wechatpay-Serial"},
		{"no headers at all", http.Header{}, v.Body, isMissing(HeaderTimestamp), "not signed"},
		// The SIGNTEST probe wins over everything but a missing header.
		{"SIGNTEST without serial", with(func(h http.Header) { h.Set(HeaderSignature, signTest); h.Del(HeaderSerial) }), v.Body, isMissing(HeaderSerial), ""},
		{"SIGNTEST", with(func(h http.Header) { h.Set(HeaderSignature, signTest) }), v.Body, isSignTest, "SIGNTEST"},
		{"SIGNTEST, stale, unknown serial", with(func(h http.Header) {
			h.Set(HeaderSignature, signTest)
			h.Set(HeaderTimestamp, "1")
			h.Set(HeaderSerial, "X")
		}), v.Body, isSignTest, ""},
		// The timestamp comes before the serial and the signature.
		{"stale and unknown serial", with(func(h http.Header) { h.Set(HeaderTimestamp, itoa(v.Timestamp-301)); h.Set(HeaderSerial, "X") }), v.Body, isStale, "5m1s old, more than the 5m0s allowed"},
		{"future", with(func(h http.Header) { h.Set(HeaderTimestamp, itoa(v.Timestamp+301)) }), v.Body, isStale, "5m1s in the future"},
		{"malformed timestamp", with(func(h http.Header) { h.Set(HeaderTimestamp, "1767225600.0") }), v.Body, isMalformed, "not decimal Unix seconds"},
		{"signed timestamp", with(func(h http.Header) { h.Set(HeaderTimestamp, "+1767225600") }), v.Body, isMalformed, ""},
		{"millisecond timestamp", with(func(h http.Header) { h.Set(HeaderTimestamp, "1767225600000") }), v.Body, isMalformed, ""},
		{"huge timestamp", with(func(h http.Header) { h.Set(HeaderTimestamp, "99999999999999999999999") }), v.Body, isMalformed, ""},
		// The serial comes before the signature.
		{"unknown serial and bad signature", with(func(h http.Header) { h.Set(HeaderSerial, "PUB_KEY_ID_0119000091912025010100000000000002") }), v.Body + "x", isUnknown, `"PUB_KEY_ID_0119000091912025010100000000000002" names no known`},
		{"serial in lowercase", with(func(h http.Header) { h.Set(HeaderSerial, strings.ToLower(v.Serial)) }), v.Body, isUnknown, ""},
		{"serial with a prefix of a known one", with(func(h http.Header) { h.Set(HeaderSerial, v.Serial[:20]) }), v.Body, isUnknown, ""},
		{"serial of the other key", with(func(h http.Header) { h.Set(HeaderSerial, f.v.Serials["platform"]) }), v.Body, isBad, "does not verify"},
		{"bad signature", base.header(), v.Body + " ", isBad, "does not verify"},
		{"signature not base64", with(func(h http.Header) { h.Set(HeaderSignature, "%%%") }), v.Body, isBad, "base64"},
		{"other signature type", with(func(h http.Header) { h.Set(HeaderSignatureType, "WECHATPAY2-SM2-WITH-SM3") }), v.Body + " ", isBad, "WECHATPAY2-SM2-WITH-SM3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ver := &Verifier{Keys: testKeys(f), Now: func() time.Time { return now }}
			err := ver.Verify(tt.h, []byte(tt.body))
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !tt.want(err) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if tt.msg != "" {
				errorContains(t, err, tt.msg)
			}
		})
	}
}

func TestVerifyWindow(t *testing.T) {
	f := fx(t)
	v := f.v.AnswerSigns[0]
	h := signedBody{Body: v.Body, Timestamp: v.Timestamp, Nonce: v.Nonce, Serial: v.Serial, Signature: v.Signature}.header()
	sent := time.Unix(v.Timestamp, 0)
	for _, tt := range []struct {
		window time.Duration
		now    time.Time
		ok     bool
		skew   time.Duration
	}{
		{0, sent.Add(300 * time.Second), true, 0},
		{0, sent.Add(-300 * time.Second), true, 0},
		{0, sent.Add(300*time.Second + time.Millisecond), false, 300*time.Second + time.Millisecond},
		{0, sent.Add(-301 * time.Second), false, -301 * time.Second},
		{time.Minute, sent.Add(61 * time.Second), false, 61 * time.Second},
		{time.Minute, sent.Add(59 * time.Second), true, 0},
		{time.Hour, sent.Add(-59 * time.Minute), true, 0},
	} {
		ver := &Verifier{Keys: testKeys(f), Window: tt.window, Now: func() time.Time { return tt.now }}
		err := ver.Verify(h, []byte(v.Body))
		if tt.ok {
			if err != nil {
				t.Errorf("window %v, now %v: %v", tt.window, tt.now.Sub(sent), err)
			}
			continue
		}
		var te *TimestampError
		if !errors.As(err, &te) || te.Skew != tt.skew || te.Timestamp != itoa(v.Timestamp) {
			t.Errorf("window %v, now %v: err = %#v", tt.window, tt.now.Sub(sent), err)
		}
	}
	// The default clock is the real one: the vector is from 2026-01-01.
	if err := (&Verifier{Keys: testKeys(f)}).Verify(h, []byte(v.Body)); err == nil && time.Since(sent).Abs() > DefaultWindow {
		t.Error("a vector far from now verified with the real clock")
	}
}

func TestVerifierWithoutKeys(t *testing.T) {
	f := fx(t)
	v := f.v.AnswerSigns[0]
	h := signedBody{Body: v.Body, Timestamp: v.Timestamp, Nonce: v.Nonce, Serial: v.Serial, Signature: v.Signature}.header()
	now := func() time.Time { return time.Unix(v.Timestamp, 0) }
	var unknown *UnknownSerialError
	if err := (&Verifier{Now: now}).Verify(h, []byte(v.Body)); !errors.As(err, &unknown) {
		t.Fatalf("no keys: %v", err)
	}
	if err := (&Verifier{Keys: KeySources{}, Now: now}).Verify(h, []byte(v.Body)); !errors.As(err, &unknown) {
		t.Fatalf("empty sources: %v", err)
	}
	var nilVerifier *Verifier
	if err := nilVerifier.Verify(h, []byte(v.Body)); err == nil {
		t.Fatal("a nil verifier verified")
	}
}

func TestKeySetAndSources(t *testing.T) {
	f := fx(t)
	a, b := f.wechatPub, &f.platformKey.PublicKey
	m := map[string]*rsa.PublicKey{"PUB_KEY_ID_01": a, "NIL": nil}
	set := NewKeySet(m)
	m["PUB_KEY_ID_01"] = b // the set holds a copy
	if k, ok := set.VerificationKey("PUB_KEY_ID_01"); !ok || k != a {
		t.Fatal("key not found, or the set follows the caller's map")
	}
	for _, s := range []string{"NIL", "PUB_KEY_ID_0", "PUB_KEY_ID_01 ", "pub_key_id_01", ""} {
		if _, ok := set.VerificationKey(s); ok {
			t.Errorf("serial %q found", s)
		}
	}
	if got := set.Serials(); len(got) != 1 || got[0] != "PUB_KEY_ID_01" {
		t.Errorf("Serials = %q", got)
	}
	var nilSet *KeySet
	if _, ok := nilSet.VerificationKey("x"); ok {
		t.Error("nil set found a key")
	}

	// The first source that knows a serial answers.
	other := NewKeySet(map[string]*rsa.PublicKey{"PUB_KEY_ID_01": b, "S2": b})
	ks := KeySources{nil, set, other}
	if k, ok := ks.VerificationKey("PUB_KEY_ID_01"); !ok || k != a {
		t.Error("the first source did not win")
	}
	if k, ok := ks.VerificationKey("S2"); !ok || k != b {
		t.Error("the second source was not asked")
	}
	if _, ok := ks.VerificationKey("S3"); ok {
		t.Error("unknown serial found")
	}
}

func TestIsV3Request(t *testing.T) {
	for _, tt := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"Wechatpay-Signature": {"x"}}, true},
		{http.Header{"Wechatpay-Signature": {""}}, true},
		{headerOf(map[string]string{"wechatpay-signature": "x"}), true},
		{http.Header{"Content-Type": {"text/xml"}}, false},
		{http.Header{"Wechatpay-Serial": {"PUB_KEY_ID_1"}}, false},
		{nil, false},
	} {
		if got := IsV3Request(tt.h); got != tt.want {
			t.Errorf("IsV3Request(%v) = %v", tt.h, got)
		}
	}
}
