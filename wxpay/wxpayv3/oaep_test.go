package wxpayv3

import (
	"strings"
	"testing"
)

// The ciphertexts of vectors.json were made by Python's cryptography:
// RSA-OAEP (SHA-1, MGF1-SHA-1, no label) to the merchant's public key, as
// WeChat encrypts sensitive fields of its answers.
func TestDecryptSensitiveVectors(t *testing.T) {
	f := fx(t)
	for _, v := range f.v.OAEP {
		got, err := DecryptSensitive(f.merchantKey, v.Ciphertext)
		if err != nil {
			t.Fatalf("%q: %v", v.Plaintext, err)
		}
		if got != v.Plaintext {
			t.Fatalf("got %q, want %q", got, v.Plaintext)
		}
	}
}

func TestEncryptSensitiveRoundTrip(t *testing.T) {
	f := fx(t)
	const name = "张三"
	a, err := EncryptSensitive(f.wechatPub, name)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EncryptSensitive(f.wechatPub, name)
	if a == b {
		t.Fatal("OAEP gave the same ciphertext twice")
	}
	for _, ct := range []string{a, b} {
		got, err := DecryptSensitive(f.wechatKey, ct)
		if err != nil || got != name {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	}
	// The merchant key cannot read what was for WeChat.
	_, err = DecryptSensitive(f.merchantKey, a)
	errorContains(t, err, "does not decrypt")
	if strings.Contains(err.Error(), name) {
		t.Fatal("the error shows the plaintext")
	}
	// 2048-bit OAEP-SHA1 holds 214 bytes.
	if _, err := EncryptSensitive(f.wechatPub, strings.Repeat("x", 214)); err != nil {
		t.Fatal(err)
	}
	_, err = EncryptSensitive(f.wechatPub, strings.Repeat("秘", 72))
	errorContains(t, err, "216 bytes are too long")
	if strings.Contains(err.Error(), "秘") {
		t.Fatal("the error shows the plaintext")
	}
	if _, err := DecryptSensitive(f.merchantKey, "not base64!"); err == nil {
		t.Fatal("decrypted junk")
	}
	if _, err := EncryptSensitive(nil, "x"); err == nil {
		t.Fatal("encrypted without a key")
	}
}
