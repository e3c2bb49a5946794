package wxpay

import (
	"crypto/aes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// A refund notification (退款结果通知) is not signed. Its outer <xml> carries
// return_code, appid, mch_id, nonce_str and req_info: base64 of the
// AES-256-ECB (PKCS#7) encryption of a <root> document with the refund's
// fields, under the key that is the lowercase hex MD5 of the API key (its 32
// ASCII characters, not the 16 bytes of the digest, and not the API key
// itself).
//
// ECB carries no integrity check: whoever has seen notifications could
// reorder their 16-byte blocks. Before money moves on a refund
// notification, confirm it with QueryRefund.

// ErrReqInfoDecrypt means a refund notification's req_info does not decrypt
// with the API key: a wrong key (it shows up as bad padding), or a
// truncated or tampered ciphertext.
var ErrReqInfoDecrypt = errors.New("wxpay: refund notification: req_info does not decrypt")

// RefundNotification is a decrypted refund notification.
type RefundNotification struct {
	// Params holds the outer fields received, in document order: return_code,
	// appid, mch_id, nonce_str, req_info.
	Params Params
	// Info holds the decrypted <root> fields, in document order, fields
	// WeChat adds later included.
	Info Params
}

// DecryptRefundNotification decodes a refund notification and decrypts its
// req_info with key. It checks that the fields a refund needs are there and
// that its amounts are well formed; it does not check the merchant or the
// order, which is the caller's job.
func DecryptRefundNotification(body []byte, key APIKey) (*RefundNotification, error) {
	p, err := DecodeXML(body)
	if err != nil {
		return nil, fmt.Errorf("wxpay: refund notification: %w", err)
	}
	if rc := p.Get("return_code"); rc != "SUCCESS" {
		return nil, fmt.Errorf("wxpay: refund notification: return_code is %q", rc)
	}
	reqInfo := p.Get("req_info")
	if reqInfo == "" {
		return nil, fmt.Errorf("wxpay: refund notification: %w", fieldErrorf("req_info", "is missing"))
	}
	info, err := decryptReqInfo(reqInfo, key)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"out_refund_no", "refund_id", "out_trade_no", "refund_status", "refund_fee", "total_fee"} {
		if info.Get(f) == "" {
			return nil, fmt.Errorf("wxpay: refund notification: %w", fieldErrorf(f, "is missing"))
		}
	}
	for _, f := range info {
		if IsAmountField(f.Name) {
			if _, err := parseAmount(f.Value); err != nil {
				return nil, fmt.Errorf("wxpay: refund notification: %w", fieldErrorf(f.Name, "%v", err))
			}
		}
	}
	n := &RefundNotification{Params: p, Info: info}
	refund, _ := n.RefundFee()
	total, _ := n.TotalFee()
	if refund > total {
		return nil, fmt.Errorf("wxpay: refund notification: %w", fieldErrorf("refund_fee", "is %d fen, more than total_fee %d", refund, total))
	}
	return n, nil
}

// EncryptRefundInfo encrypts info as a refund notification's req_info: a
// <root> document, AES-256-ECB with PKCS#7 padding under the lowercase hex
// MD5 of key, in base64. It is the inverse of the decryption in
// DecryptRefundNotification, for simulators and tests.
func EncryptRefundInfo(info Params, key APIKey) (string, error) {
	if key == "" {
		return "", errors.New("wxpay: refund notification: api key is empty")
	}
	plain, err := AppendXML(nil, "root", info)
	if err != nil {
		return "", fmt.Errorf("wxpay: refund notification: %w", err)
	}
	block, err := aes.NewCipher(reqInfoKey(key))
	if err != nil {
		return "", err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	for range pad {
		plain = append(plain, byte(pad))
	}
	for i := 0; i < len(plain); i += aes.BlockSize {
		block.Encrypt(plain[i:i+aes.BlockSize], plain[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(plain), nil
}

// reqInfoKey is the AES-256 key of req_info: the 32 ASCII characters of the
// lowercase hex MD5 of the API key.
func reqInfoKey(key APIKey) []byte {
	sum := md5.Sum([]byte(key))
	k := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(k, sum[:])
	return k
}

// decryptReqInfo decrypts and decodes req_info. Nothing of the key or the
// plaintext goes into its errors.
func decryptReqInfo(reqInfo string, key APIKey) (Params, error) {
	if key == "" {
		return nil, errors.New("wxpay: refund notification: api key is empty")
	}
	ct, err := base64.StdEncoding.DecodeString(reqInfo)
	if err != nil {
		return nil, fmt.Errorf("wxpay: refund notification: req_info is not base64: %v", err)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes of ciphertext are not whole AES blocks (truncated?)", ErrReqInfoDecrypt, len(ct))
	}
	block, err := aes.NewCipher(reqInfoKey(key))
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(ct))
	for i := 0; i < len(ct); i += aes.BlockSize {
		block.Decrypt(plain[i:i+aes.BlockSize], ct[i:i+aes.BlockSize])
	}
	// PKCS#7, checked strictly: n in 1..16, and the last n bytes all n.
	n := int(plain[len(plain)-1])
	if n < 1 || n > aes.BlockSize {
		return nil, fmt.Errorf("%w: bad PKCS#7 padding (wrong API key?)", ErrReqInfoDecrypt)
	}
	for _, b := range plain[len(plain)-n:] {
		if int(b) != n {
			return nil, fmt.Errorf("%w: bad PKCS#7 padding (wrong API key?)", ErrReqInfoDecrypt)
		}
	}
	info, err := DecodeFlatXML(plain[:len(plain)-n], "root")
	if err != nil {
		// The padding of a wrong key is right one time in about 256; what
		// it decrypts to is then noise.
		return nil, fmt.Errorf("%w: the plaintext is not a <root> document (wrong API key, or tampered ciphertext?)", ErrReqInfoDecrypt)
	}
	return info, nil
}

// Get returns the value of a decrypted field of the notification.
func (n *RefundNotification) Get(name string) string { return n.Info.Get(name) }

// MchID is the merchant the notification is for (outer, unencrypted).
func (n *RefundNotification) MchID() string { return n.Params.Get("mch_id") }

// AppID is the app id of the refunded order (outer, unencrypted).
func (n *RefundNotification) AppID() string { return n.Params.Get("appid") }

// OutRefundNo is the merchant's refund number.
func (n *RefundNotification) OutRefundNo() string { return n.Info.Get("out_refund_no") }

// RefundID is WeChat's refund number.
func (n *RefundNotification) RefundID() string { return n.Info.Get("refund_id") }

// TransactionID is WeChat's payment number of the refunded order.
func (n *RefundNotification) TransactionID() string { return n.Info.Get("transaction_id") }

// OutTradeNo is the merchant's number of the refunded order.
func (n *RefundNotification) OutTradeNo() string { return n.Info.Get("out_trade_no") }

// RefundStatus is the refund's outcome: SUCCESS, CHANGE or REFUNDCLOSE.
func (n *RefundNotification) RefundStatus() string { return n.Info.Get("refund_status") }

// Succeeded reports whether the refund succeeded (refund_status SUCCESS).
func (n *RefundNotification) Succeeded() bool { return n.RefundStatus() == RefundStatusSuccess }

// TotalFee is the refunded order's amount in fen.
func (n *RefundNotification) TotalFee() (int64, error) { return parseAmount(n.Info.Get("total_fee")) }

// RefundFee is the refund's amount in fen.
func (n *RefundNotification) RefundFee() (int64, error) { return parseAmount(n.Info.Get("refund_fee")) }

// SuccessTime is when the refund succeeded, "yyyy-MM-dd HH:mm:ss" in Beijing
// time; empty unless it did.
func (n *RefundNotification) SuccessTime() string { return n.Info.Get("success_time") }
