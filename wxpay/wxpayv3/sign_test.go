package wxpayv3

import (
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
)

func TestMessage(t *testing.T) {
	for _, tt := range []struct {
		parts []string
		want  string
	}{
		{nil, ""},
		{[]string{""}, "\n"},
		{[]string{"GET", "/v3/x", "1", "n", ""}, "GET\n/v3/x\n1\nn\n\n"},
		{[]string{"1", "n", "{}"}, "1\nn\n{}\n"},
	} {
		if got := Message(tt.parts...); got != tt.want {
			t.Errorf("Message(%q) = %q, want %q", tt.parts, got, tt.want)
		}
	}
}

// The request vectors were signed by Python's cryptography with the
// merchant key and cross-checked with `openssl dgst -sha256 -sign`
// (testdata/gen_vectors.py): PKCS#1 v1.5 is deterministic, so our
// signature must be the same bytes.
func TestRequestSignatureVectors(t *testing.T) {
	f := fx(t)
	pkcs1, err := ParsePrivateKey(readTestdata(t, "merchant_key_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	merchantPub := f.merchantCert.PublicKey.(*rsa.PublicKey)
	for _, v := range f.v.RequestSigns {
		t.Run(v.Name, func(t *testing.T) {
			msg := Message(v.Method, v.PathAndQuery, itoa(v.Timestamp), v.Nonce, v.Body)
			if msg != v.Message {
				t.Fatalf("message %q, want %q", msg, v.Message)
			}
			for _, key := range []*rsa.PrivateKey{f.merchantKey, pkcs1} {
				sig, err := SignSHA256WithRSA(key, msg)
				if err != nil {
					t.Fatal(err)
				}
				if sig != v.Signature {
					t.Fatalf("signature\n%s\nwant\n%s", sig, v.Signature)
				}
			}
			s := &Signer{MchID: f.v.MchID, Serial: f.v.Serials["merchant"], Key: f.merchantKey}
			auth, err := s.Authorization(v.Method, v.PathAndQuery, []byte(v.Body), v.Timestamp, v.Nonce)
			if err != nil {
				t.Fatal(err)
			}
			if auth != v.Authorization {
				t.Fatalf("Authorization\n%s\nwant\n%s", auth, v.Authorization)
			}
			if err := VerifySHA256WithRSA(merchantPub, v.Message, v.Signature); err != nil {
				t.Fatal(err)
			}
			a, err := ParseAuthorization(v.Authorization)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.VerifyRequest(merchantPub, v.Method, v.PathAndQuery, []byte(v.Body)); err != nil {
				t.Fatal(err)
			}
			// Another body, path or method does not verify.
			for _, alt := range []struct{ m, p, b string }{
				{v.Method, v.PathAndQuery, v.Body + " "},
				{v.Method, v.PathAndQuery + "&x=1", v.Body},
				{"PUT", v.PathAndQuery, v.Body},
			} {
				if err := a.VerifyRequest(merchantPub, alt.m, alt.p, []byte(alt.b)); !errors.Is(err, ErrBadSignature) {
					t.Errorf("altered request %q verifies: %v", alt, err)
				}
			}
		})
	}
}

func TestVerifySHA256WithRSA(t *testing.T) {
	f := fx(t)
	v := f.v.AnswerSigns[0]
	for _, tt := range []struct {
		name      string
		pub       *rsa.PublicKey
		msg, sig  string
		wantError bool
	}{
		{"good", f.wechatPub, v.Message, v.Signature, false},
		{"other message", f.wechatPub, v.Message + "x", v.Signature, true},
		{"other key", &f.platformKey.PublicKey, v.Message, v.Signature, true},
		{"not base64", f.wechatPub, v.Message, "!!" + v.Signature, true},
		{"URL base64", f.wechatPub, v.Message, strings.NewReplacer("+", "-", "/", "_").Replace(v.Signature), strings.ContainsAny(v.Signature, "+/")},
		{"empty", f.wechatPub, v.Message, "", true},
	} {
		err := VerifySHA256WithRSA(tt.pub, tt.msg, tt.sig)
		if tt.wantError != (err != nil) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if err != nil && !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: err = %v, not ErrBadSignature", tt.name, err)
		}
	}
	if err := VerifySHA256WithRSA(nil, "m", "c2ln"); err == nil {
		t.Error("verified without a key")
	}
}

func TestSignerRefuses(t *testing.T) {
	f := fx(t)
	good := Signer{MchID: "1900009191", Serial: "3775B6A4", Key: f.merchantKey}
	for _, tt := range []struct {
		name   string
		s      Signer
		method string
		target string
		nonce  string
		want   string
	}{
		{"no key", Signer{MchID: "1", Serial: "A"}, "GET", "/v3", "n", "no private key"},
		{"no mchid", Signer{Serial: "A", Key: f.merchantKey}, "GET", "/v3", "n", "mchid is empty"},
		{"quote in serial", Signer{MchID: "1", Serial: `A"B`, Key: f.merchantKey}, "GET", "/v3", "n", "serial_no has a quote"},
		{"no nonce", good, "GET", "/v3", "", "nonce_str is empty"},
		{"relative target", good, "GET", "v3/x", "n", "not an absolute path"},
		{"absolute URL", good, "GET", "https://api.mch.weixin.qq.com/v3/x", "n", "not an absolute path"},
		{"no method", good, "", "/v3", "n", "invalid method"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.s.Authorization(tt.method, tt.target, nil, 1, tt.nonce)
			errorContains(t, err, tt.want)
		})
	}
}

func TestParseAuthorization(t *testing.T) {
	f := fx(t)
	want := Authorization{MchID: "1900009191", NonceStr: "N0nce", Timestamp: "1554208460", SerialNo: "3775B6A4", Signature: "c2ln/+=="}
	for _, tt := range []struct {
		name   string
		header string
		err    string // "" when it parses to want
	}{
		{"documented order", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+=="`, ""},
		{"other order", `WECHATPAY2-SHA256-RSA2048 signature="c2ln/+==",serial_no="3775B6A4",timestamp="1554208460",nonce_str="N0nce",mchid="1900009191"`, ""},
		{"spaces after commas", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191", nonce_str="N0nce",  timestamp="1554208460",serial_no="3775B6A4" ,signature="c2ln/+=="`, ""},
		{"lowercase scheme", `wechatpay2-sha256-rsa2048 mchid="1900009191",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+=="`, "scheme"},
		{"other scheme", `Bearer x`, `scheme is "Bearer"`},
		{"no space", `WECHATPAY2-SHA256-RSA2048mchid="1"`, "scheme"},
		{"empty", ``, "scheme"},
		{"missing signature", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4"`, "signature is missing"},
		{"twice", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191",mchid="2",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+=="`, "mchid appears twice"},
		{"unquoted", `WECHATPAY2-SHA256-RSA2048 mchid=1900009191,nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+=="`, "not quoted"},
		{"unterminated", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191,nonce_str="N0nce`, "expected a comma"},
		{"no closing quote", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191`, "no closing quote"},
		{"empty value", `WECHATPAY2-SHA256-RSA2048 mchid="",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+=="`, "mchid is empty"},
		{"unknown field", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191",appid="x",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+=="`, `unknown field "appid"`},
		{"trailing comma", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+==",`, "expected name"},
		{"junk after", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191",nonce_str="N0nce",timestamp="1554208460",serial_no="3775B6A4",signature="c2ln/+==" x`, "expected a comma"},
		{"control character", "WECHATPAY2-SHA256-RSA2048 mchid=\"19000\t09191\",nonce_str=\"N0nce\",timestamp=\"1554208460\",serial_no=\"3775B6A4\",signature=\"c2ln/+==\"", "control character"},
		{"semicolons", `WECHATPAY2-SHA256-RSA2048 mchid="1900009191";nonce_str="N0nce"`, "expected a comma"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAuthorization(tt.header)
			if tt.err != "" {
				if a != nil {
					t.Fatal("a result came with the error")
				}
				errorContains(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *a != want {
				t.Fatalf("parsed %+v, want %+v", *a, want)
			}
		})
	}
	// The Python-made header of each vector.
	for _, v := range f.v.RequestSigns {
		a, err := ParseAuthorization(v.Authorization)
		if err != nil {
			t.Fatal(err)
		}
		if a.Signature != v.Signature || a.NonceStr != v.Nonce || a.Timestamp != itoa(v.Timestamp) || a.SerialNo != f.v.Serials["merchant"] || a.MchID != f.v.MchID {
			t.Fatalf("vector %q parsed as %+v", v.Name, a)
		}
		if a.String() != v.Authorization {
			t.Fatalf("String() = %s", a.String())
		}
	}
}

func TestNonceStr(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for i := 0; i < 2000; i++ {
		n := NonceStr()
		if len(n) != 32 {
			t.Fatalf("nonce %q has %d characters", n, len(n))
		}
		for _, c := range n {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				t.Fatalf("nonce %q has %q", n, c)
			}
			counts[c]++
		}
		if seen[n] {
			t.Fatalf("nonce %q twice", n)
		}
		seen[n] = true
	}
	// 64000 characters over 62 symbols: about 1032 each. Every symbol shows
	// up, none far off (a bias of the modulo would show as ~+25% on some).
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		if n < 800 || n > 1300 {
			t.Errorf("character %q appears %d times of 64000", c, n)
		}
	}
}
