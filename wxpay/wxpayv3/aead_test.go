package wxpayv3

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// The resources of vectors.json were encrypted by Python's cryptography
// (AESGCM) with the 32-byte APIv3 key of the vectors.
func TestDecryptResourceVectors(t *testing.T) {
	f := fx(t)
	for _, v := range f.v.AEAD {
		t.Run(v.Name, func(t *testing.T) {
			r := &Resource{Algorithm: "AEAD_AES_256_GCM", Ciphertext: v.Ciphertext, Nonce: v.Nonce, AssociatedData: v.AssociatedData}
			got, err := DecryptResource(f.key, r)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != v.Plaintext {
				t.Fatalf("plaintext %q, want %q", got, v.Plaintext)
			}
			// GCM is deterministic for a nonce: encrypting gives Python's bytes.
			enc, err := EncryptResource(f.key, v.Nonce, v.AssociatedData, []byte(v.Plaintext))
			if err != nil {
				t.Fatal(err)
			}
			if enc.Ciphertext != v.Ciphertext || enc.Algorithm != AlgorithmAEADAES256GCM || enc.Nonce != v.Nonce || enc.AssociatedData != v.AssociatedData {
				t.Fatalf("EncryptResource = %+v, want ciphertext %s", enc, v.Ciphertext)
			}
		})
	}
}

// The public check of wechatpay-go's utils/aes_test.go, with its 16-byte
// key (AES-128), through the helper that takes any AES key length, and
// the failing cases of that test.
func TestDecryptAESGCMPublicVector(t *testing.T) {
	const (
		key   = "testAPIv3Key0000"
		nonce = "wCq51qZv4Yfg"
		ad    = "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8"
		ct    = "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"
	)
	got, err := decryptAESGCM([]byte(key), nonce, ad, ct)
	if err != nil || string(got) != "Hello World" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, tt := range []struct {
		name, key, ct string
		decryptErr    bool
	}{
		{"invalid base64", key, "invalid cipher", true},
		{"not this ciphertext", key, "SGVsbG8gV29ybGQK", true},
		{"wrong key", "testAPIv3Key1111", ct, true},
		{"not an AES key", "not a aes key", ct, false},
	} {
		_, err := decryptAESGCM([]byte(tt.key), nonce, ad, tt.ct)
		if err == nil || errors.Is(err, ErrDecrypt) != tt.decryptErr {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
	// The 16-byte key is not an APIv3 key.
	if _, err := DecryptResource(APIv3Key(key), &Resource{Algorithm: "AEAD_AES_256_GCM", Ciphertext: ct, Nonce: nonce, AssociatedData: ad}); err == nil || !strings.Contains(err.Error(), "16 bytes") {
		t.Fatalf("DecryptResource with a 16-byte key: %v", err)
	}
}

func TestDecryptResourceRefuses(t *testing.T) {
	f := fx(t)
	v := f.v.AEAD[0]
	good := Resource{Algorithm: "AEAD_AES_256_GCM", Ciphertext: v.Ciphertext, Nonce: v.Nonce, AssociatedData: v.AssociatedData}
	raw, _ := base64.StdEncoding.DecodeString(v.Ciphertext)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	for _, tt := range []struct {
		name    string
		key     APIv3Key
		change  func(r *Resource)
		decrypt bool   // the error is ErrDecrypt
		msg     string // else its message has this
	}{
		{"wrong key", APIv3Key(strings.Repeat("k", 32)), func(*Resource) {}, true, ""},
		{"flipped ciphertext bit", f.key, func(r *Resource) { r.Ciphertext = flip(0) }, true, ""},
		{"flipped tag bit", f.key, func(r *Resource) { r.Ciphertext = flip(len(raw) - 1) }, true, ""},
		{"truncated", f.key, func(r *Resource) { r.Ciphertext = base64.StdEncoding.EncodeToString(raw[:len(raw)-1]) }, true, ""},
		{"shorter than the tag", f.key, func(r *Resource) { r.Ciphertext = base64.StdEncoding.EncodeToString(raw[:15]) }, true, ""},
		{"empty ciphertext", f.key, func(r *Resource) { r.Ciphertext = "" }, true, ""},
		{"other associated data", f.key, func(r *Resource) { r.AssociatedData = "refund" }, true, ""},
		{"associated data dropped", f.key, func(r *Resource) { r.AssociatedData = "" }, true, ""},
		{"other nonce", f.key, func(r *Resource) { r.Nonce = "fdasflkja485" }, true, ""},
		{"not base64", f.key, func(r *Resource) { r.Ciphertext = "@@" + r.Ciphertext }, true, ""},
		{"short nonce", f.key, func(r *Resource) { r.Nonce = "fdasflkja48" }, false, "nonce has 11 bytes"},
		{"long nonce", f.key, func(r *Resource) { r.Nonce = "fdasflkja4844" }, false, "nonce has 13 bytes"},
		{"other algorithm", f.key, func(r *Resource) { r.Algorithm = "AEAD_SM4_GCM" }, false, `"AEAD_SM4_GCM"`},
		{"no algorithm", f.key, func(r *Resource) { r.Algorithm = "" }, false, "only AEAD_AES_256_GCM"},
		{"no key", "", func(*Resource) {}, false, "empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.change(&r)
			pt, err := DecryptResource(tt.key, &r)
			if err == nil || pt != nil {
				t.Fatalf("decrypted: %q, %v", pt, err)
			}
			if errors.Is(err, ErrDecrypt) != tt.decrypt {
				t.Fatalf("err = %v", err)
			}
			if tt.msg != "" {
				errorContains(t, err, tt.msg)
			}
			if strings.Contains(err.Error(), string(f.key)) || strings.Contains(err.Error(), "SUCCESS") {
				t.Fatalf("error %q shows the key or plaintext", err)
			}
		})
	}
	if _, err := DecryptResource(f.key, nil); err == nil {
		t.Fatal("nil resource")
	}
}

func TestEncryptResource(t *testing.T) {
	f := fx(t)
	r, err := EncryptResource(f.key, "", "transaction", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Nonce) != 12 {
		t.Fatalf("random nonce %q", r.Nonce)
	}
	pt, err := DecryptResource(f.key, r)
	if err != nil || string(pt) != "{}" {
		t.Fatalf("round trip: %q, %v", pt, err)
	}
	if _, err := EncryptResource(f.key, "short", "", nil); err == nil {
		t.Fatal("short nonce accepted")
	}
	if _, err := EncryptResource("short key", "fdasflkja484", "", nil); err == nil {
		t.Fatal("short key accepted")
	}
}
