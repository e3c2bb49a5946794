package wxpayv3

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
)

// AlgorithmAEADAES256GCM is the only resource algorithm of APIv3.
const AlgorithmAEADAES256GCM = "AEAD_AES_256_GCM"

// gcmNonceSize is the length of a resource's nonce, and of GCM's.
const gcmNonceSize = 12

// Resource is an encrypted resource of APIv3: the resource of a
// notification, or the encrypt_certificate of a platform certificate.
type Resource struct {
	Algorithm      string `json:"algorithm"`       // AEAD_AES_256_GCM
	Ciphertext     string `json:"ciphertext"`      // base64 of the ciphertext with the 16-byte tag appended
	Nonce          string `json:"nonce"`           // 12 bytes, used as given
	AssociatedData string `json:"associated_data"` // used as given; may be ""
	OriginalType   string `json:"original_type,omitempty"`
}

// DecryptResource decrypts r with the APIv3 key (AES-256-GCM; nonce and
// associated data are the strings' bytes as given). A ciphertext that is
// not base64, is too short, or fails its authentication tag is
// ErrDecrypt: a forged or corrupted resource, or the wrong key. Errors
// contain neither the key nor the plaintext.
func DecryptResource(key APIv3Key, r *Resource) ([]byte, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("wxpayv3: no resource to decrypt")
	}
	if r.Algorithm != AlgorithmAEADAES256GCM {
		return nil, fmt.Errorf("wxpayv3: resource algorithm is %s, only %s is supported", quoteShort(r.Algorithm), AlgorithmAEADAES256GCM)
	}
	return decryptAESGCM([]byte(key), r.Nonce, r.AssociatedData, r.Ciphertext)
}

// decryptAESGCM is the decryption of DecryptResource for an AES key of any
// length (16, 24 or 32 bytes), so that public AES-128 vectors can check it.
func decryptAESGCM(key []byte, nonce, associatedData, ciphertext string) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != gcmNonceSize {
		return nil, fmt.Errorf("wxpayv3: resource nonce has %d bytes, want %d", len(nonce), gcmNonceSize)
	}
	ct, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not standard base64", ErrDecrypt)
	}
	if len(ct) < aead.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext has %d bytes, shorter than the %d-byte tag", ErrDecrypt, len(ct), aead.Overhead())
	}
	plain, err := aead.Open(ct[:0:0], []byte(nonce), ct, []byte(associatedData))
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wxpayv3: AES key of %d bytes: not a valid AES key size", len(key))
	}
	return cipher.NewGCM(block)
}

// EncryptResource encrypts plaintext as WeChat does a notification's
// resource or a platform certificate, for simulators and tests. nonce must
// be 12 bytes; when it is empty a random one is used. The OriginalType of
// the result is left for the caller to set.
func EncryptResource(key APIv3Key, nonce, associatedData string, plaintext []byte) (*Resource, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if nonce == "" {
		nonce = NonceStr()[:gcmNonceSize]
	}
	if len(nonce) != gcmNonceSize {
		return nil, fmt.Errorf("wxpayv3: resource nonce has %d bytes, want %d", len(nonce), gcmNonceSize)
	}
	aead, err := newGCM([]byte(key))
	if err != nil {
		return nil, err
	}
	ct := aead.Seal(nil, []byte(nonce), plaintext, []byte(associatedData))
	return &Resource{
		Algorithm:      AlgorithmAEADAES256GCM,
		Ciphertext:     base64.StdEncoding.EncodeToString(ct),
		Nonce:          nonce,
		AssociatedData: associatedData,
	}, nil
}
