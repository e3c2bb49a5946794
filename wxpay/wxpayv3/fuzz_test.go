package wxpayv3

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The notifications the fuzzer starts from are the Python-signed ones of
// vectors.json. A body, timestamp or nonce the fuzzer derives from one may
// only be accepted if it is exactly what WeChat's key signed.
func FuzzParseNotification(f *testing.F) {
	fix := fx(f)
	type signed struct{ ts, nonce, body, plaintext string }
	var good []signed
	for _, v := range fix.v.Notifications {
		h := v.Headers
		good = append(good, signed{h[HeaderTimestamp], h[HeaderNonce], v.Body, v.Plaintext})
		f.Add([]byte(v.Body), h[HeaderTimestamp], h[HeaderNonce], h[HeaderSignature], h[HeaderSerial])
		f.Add([]byte(strings.Replace(v.Body, `"id"`, `"iD"`, 1)), h[HeaderTimestamp], h[HeaderNonce], h[HeaderSignature], h[HeaderSerial])
		f.Add([]byte(v.Body), h[HeaderTimestamp], h[HeaderNonce], "WECHATPAY/SIGNTEST/"+h[HeaderSignature], h[HeaderSerial])
		f.Add([]byte(v.Body), "", h[HeaderNonce], h[HeaderSignature], fix.v.Serials["platform"])
	}
	f.Add([]byte(`{"id":"1","event_type":"TRANSACTION.SUCCESS","resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","nonce":"123456789012"}}`), "1767225600", "n", "c2ln", "X")
	f.Add([]byte("null"), "1767225600", "n", "", "")
	ver := &Verifier{Keys: testKeys(fix), Now: func() time.Time { return fix.now }}
	f.Fuzz(func(t *testing.T, body []byte, ts, nonce, sig, serial string) {
		// What follows the verification, reached directly: it must not
		// panic, and what it accepts is complete.
		if n, err := openNotification(fix.key, body); err == nil {
			if n.ID == "" || n.EventType == "" || n.Resource.Ciphertext == "" || n.Resource.Nonce == "" || n.Plaintext == nil {
				t.Fatalf("opened an incomplete notification %q", body)
			}
		} else if n != nil {
			t.Fatal("a notification came with an error")
		}

		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderNonce, nonce)
		h.Set(HeaderSignature, sig)
		h.Set(HeaderSerial, serial)
		n, err := ParseNotification(ver, fix.key, h, body)
		if err != nil {
			if n != nil {
				t.Fatal("a notification came with an error")
			}
			if strings.Contains(err.Error(), string(fix.key)) {
				t.Fatalf("error shows the APIv3 key: %v", err)
			}
			return
		}
		for _, g := range good {
			if g.ts == ts && g.nonce == nonce && g.body == string(body) {
				if string(n.Plaintext) != g.plaintext {
					t.Fatalf("plaintext %q, want %q", n.Plaintext, g.plaintext)
				}
				return
			}
		}
		t.Fatalf("accepted a notification WeChat's key did not sign: ts %q nonce %q body %q", ts, nonce, body)
	})
}

// FuzzParseAuthorization checks that what parses is well formed and
// survives a round trip through String.
func FuzzParseAuthorization(f *testing.F) {
	fix := fx(f)
	for _, v := range fix.v.RequestSigns {
		f.Add(v.Authorization)
		f.Add(strings.ReplaceAll(v.Authorization, ",", ", "))
		f.Add(strings.Replace(v.Authorization, `mchid="`, `mchid="x",mchid="`, 1))
	}
	f.Add(`WECHATPAY2-SHA256-RSA2048 signature="a",serial_no="b",timestamp="c",nonce_str="d",mchid="e"`)
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="a=b,c",nonce_str=" ",timestamp="1",serial_no="s",signature="=="`)
	f.Add(`WECHATPAY2-SHA256-RSA2048 `)
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="1"`)
	f.Fuzz(func(t *testing.T, header string) {
		a, err := ParseAuthorization(header)
		if err != nil {
			if a != nil {
				t.Fatal("a result came with an error")
			}
			return
		}
		if !strings.HasPrefix(header, AuthScheme+" ") {
			t.Fatalf("accepted %q without the scheme", header)
		}
		for _, v := range []string{a.MchID, a.NonceStr, a.Timestamp, a.SerialNo, a.Signature} {
			if v == "" || strings.ContainsAny(v, "\"\r\n\x00") {
				t.Fatalf("accepted %q with the value %q", header, v)
			}
		}
		s := a.String()
		b, err := ParseAuthorization(s)
		if err != nil {
			t.Fatalf("String() of %q = %q does not parse: %v", header, s, err)
		}
		if *b != *a {
			t.Fatalf("round trip of %q: %+v != %+v", header, *b, *a)
		}
	})
}

// FuzzVerifyHeaders feeds Verify arbitrary headers over the Python-signed
// answers: it must never panic, accept only what was signed, and fail with
// one of its documented errors.
func FuzzVerifyHeaders(f *testing.F) {
	fix := fx(f)
	type signed struct{ ts, nonce, body, serial string }
	var good []signed
	for _, v := range fix.v.AnswerSigns {
		good = append(good, signed{itoa(v.Timestamp), v.Nonce, v.Body, v.Serial})
		f.Add(itoa(v.Timestamp), v.Nonce, v.Signature, v.Serial, AuthScheme, []byte(v.Body))
		f.Add(" "+itoa(v.Timestamp), v.Nonce, v.Signature, v.Serial, "", []byte(v.Body))
		f.Add(itoa(v.Timestamp), v.Nonce, "WECHATPAY/SIGNTEST/"+v.Signature, v.Serial, AuthScheme, []byte(v.Body))
		f.Add(itoa(v.Timestamp+1000), v.Nonce, v.Signature, v.Serial, AuthScheme, []byte(v.Body))
	}
	f.Add("-1", "", "", "", "", []byte(nil))
	f.Add("99999999999999999999", "n", "AAAA", "X", "SM2", []byte("{}"))
	ver := &Verifier{Keys: testKeys(fix), Now: func() time.Time { return fix.now }}
	f.Fuzz(func(t *testing.T, ts, nonce, sig, serial, sigType string, body []byte) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderNonce, nonce)
		h.Set(HeaderSignature, sig)
		h.Set(HeaderSerial, serial)
		h.Set(HeaderSignatureType, sigType)
		err := ver.Verify(h, body)
		if err == nil {
			for _, g := range good {
				if g.ts == ts && g.nonce == nonce && g.body == string(body) && g.serial == serial {
					return
				}
			}
			t.Fatalf("verified what was not signed: %q %q %q %q", ts, nonce, serial, body)
		}
		var (
			missing *MissingHeaderError
			stale   *TimestampError
			unknown *UnknownSerialError
		)
		switch {
		case errors.As(err, &missing):
			if h.Get(missing.Name) != "" {
				t.Fatalf("%s reported missing", missing.Name)
			}
		case errors.Is(err, ErrSignTest):
			if !strings.HasPrefix(sig, "WECHATPAY/SIGNTEST/") {
				t.Fatal("SIGNTEST without the prefix")
			}
		case errors.As(err, &stale):
			if stale.Timestamp != ts {
				t.Fatal("TimestampError of another value")
			}
		case errors.As(err, &unknown):
			if unknown.Serial != serial {
				t.Fatal("UnknownSerialError of another value")
			}
		case errors.Is(err, ErrBadSignature):
		default:
			t.Fatalf("undocumented error %T: %v", err, err)
		}
		if bytes.Contains([]byte(err.Error()), []byte(fix.v.APIv3Key)) {
			t.Fatal("the key in an error")
		}
	})
}
