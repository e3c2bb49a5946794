package wxpayv3

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
)

// EncryptSensitive encrypts a sensitive field of a request (a name, a
// phone number…) for WeChat: RSA-OAEP with SHA-1 and MGF1-SHA-1, no label,
// as WeChat Pay and its SDKs use, in standard base64. pub is the WeChat
// Pay public key or the platform certificate's key; the request must then
// carry the matching Wechatpay-Serial. OAEP is randomised: every call
// gives another ciphertext.
func EncryptSensitive(pub *rsa.PublicKey, plaintext string) (string, error) {
	if pub == nil {
		return "", errors.New("wxpayv3: encrypt sensitive field: no public key")
	}
	ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, []byte(plaintext), nil)
	if err != nil {
		if errors.Is(err, rsa.ErrMessageTooLong) {
			return "", fmt.Errorf("wxpayv3: encrypt sensitive field: %d bytes are too long for RSA-OAEP with this key", len(plaintext))
		}
		return "", fmt.Errorf("wxpayv3: encrypt sensitive field: %w", err)
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// DecryptSensitive decrypts a sensitive field WeChat sent encrypted to the
// merchant's public key (RSA-OAEP, SHA-1), with the merchant's private
// key. Errors never contain the plaintext.
func DecryptSensitive(key *rsa.PrivateKey, ciphertext string) (string, error) {
	if key == nil {
		return "", errors.New("wxpayv3: decrypt sensitive field: no private key")
	}
	ct, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil {
		return "", errors.New("wxpayv3: decrypt sensitive field: ciphertext is not standard base64")
	}
	pt, err := rsa.DecryptOAEP(sha1.New(), nil, key, ct, nil)
	if err != nil {
		return "", errors.New("wxpayv3: decrypt sensitive field: does not decrypt with this key (another key, or corrupted)")
	}
	return string(pt), nil
}
