package wxpaysim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// V3Fault is a defect of an APIv3 pay notification (PayOptions.V3Fault),
// for tests of the merchant's verification. Each makes exactly one thing
// wrong; the rest of the notification is valid.
type V3Fault string

// The APIv3 notification faults.
const (
	// V3FaultStaleTimestamp signs with a Wechatpay-Timestamp
	// V3FaultSkew in the past (beyond MaxTimestampSkew).
	V3FaultStaleTimestamp V3Fault = "stale_timestamp"
	// V3FaultFutureTimestamp signs with a Wechatpay-Timestamp
	// V3FaultSkew in the future.
	V3FaultFutureTimestamp V3Fault = "future_timestamp"
	// V3FaultUnknownSerial names, in Wechatpay-Serial, a key the merchant
	// was never given (of the same kind as the one that signed).
	V3FaultUnknownSerial V3Fault = "unknown_serial"
	// V3FaultForgedSignature sends a valid base64 RSA signature made with
	// a key that is not WeChat's.
	V3FaultForgedSignature V3Fault = "forged_signature"
	// V3FaultBrokenTag flips a bit of the resource's GCM tag (the last
	// byte of the ciphertext); the signature covers the broken body.
	V3FaultBrokenTag V3Fault = "broken_gcm_tag"
	// V3FaultWrongAPIv3Key encrypts the resource with another 32-byte key;
	// the signature is valid.
	V3FaultWrongAPIv3Key V3Fault = "wrong_apiv3_key"
	// V3FaultSignTest sends a WECHATPAY/SIGNTEST/ signature, WeChat's
	// probe that the merchant verifies.
	V3FaultSignTest V3Fault = "signtest"
	// V3FaultTamperedBody changes the body (its summary) after signing.
	V3FaultTamperedBody V3Fault = "tampered_body"
)

// V3FaultSkew is how far V3FaultStaleTimestamp and V3FaultFutureTimestamp
// move the timestamp.
const V3FaultSkew = 6 * time.Minute

// V3Faults lists every V3Fault.
func V3Faults() []V3Fault {
	return []V3Fault{
		V3FaultStaleTimestamp, V3FaultFutureTimestamp, V3FaultUnknownSerial, V3FaultForgedSignature,
		V3FaultBrokenTag, V3FaultWrongAPIv3Key, V3FaultSignTest, V3FaultTamperedBody,
	}
}

// Events of v3 notifications (event_type) and their summaries.
const (
	EventTransactionSuccess = "TRANSACTION.SUCCESS"
	EventRefundSuccess      = "REFUND.SUCCESS"
	EventRefundAbnormal     = "REFUND.ABNORMAL"
	EventRefundClosed       = "REFUND.CLOSED"
)

// v3Delivery says how an APIv3 notification is sent: its fault and what
// the fault needs. It never changes once made.
type v3Delivery struct {
	fault  V3Fault
	signed []byte          // V3FaultTamperedBody: the body the signature covers
	sent   []byte          // the body sent when the fault changes it
	forger *rsa.PrivateKey // V3FaultForgedSignature
}

// bodySent is the body a delivery sends: clean unless its fault changes
// it. d may be nil.
func (d *v3Delivery) bodySent(clean []byte) []byte {
	if d != nil && d.sent != nil {
		return d.sent
	}
	return clean
}

// checkV3Fault checks opts' V3Fault before Pay takes the lock, and makes
// the forger's key when the fault needs it.
func (s *Simulator) checkV3Fault(opts PayOptions) (*rsa.PrivateKey, error) {
	switch {
	case opts.V3Fault == "":
		return nil, nil
	case !knownV3Fault(opts.V3Fault):
		return nil, fmt.Errorf("%w: unknown v3 fault %q", ErrInvalidPayOptions, opts.V3Fault)
	case opts.Lost || opts.Fail:
		return nil, fmt.Errorf("%w: v3 fault %s needs a notification: not with Lost or Fail", ErrInvalidPayOptions, opts.V3Fault)
	case opts.V3Fault != V3FaultForgedSignature:
		return nil, nil
	}
	s.forgerMu.Lock()
	defer s.forgerMu.Unlock()
	if s.forger == nil {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("wxpaysim: pay: generating the forger's key: %w", err)
		}
		s.forger = key
	}
	return s.forger, nil
}

func knownV3Fault(f V3Fault) bool {
	for _, k := range V3Faults() {
		if k == f {
			return true
		}
	}
	return false
}

// v3Envelope is a notification body.
type v3Envelope struct {
	ID           string             `json:"id"`
	CreateTime   string             `json:"create_time"`
	ResourceType string             `json:"resource_type"`
	EventType    string             `json:"event_type"`
	Summary      string             `json:"summary"`
	Resource     v3EncryptedPayload `json:"resource"`
}

// v3EncryptedPayload is a notification's resource.
type v3EncryptedPayload struct {
	OriginalType   string `json:"original_type"`
	Algorithm      string `json:"algorithm"`
	Ciphertext     string `json:"ciphertext"`
	AssociatedData string `json:"associated_data"`
	Nonce          string `json:"nonce"`
}

// newEventID returns a random UUID (version 4), as WeChat's notification
// ids look.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// v3Envelope encrypts plain with key into a notification of event.
func newV3Envelope(key []byte, event, summary, originalType string, plain []byte, now time.Time) (v3Envelope, error) {
	nonce := randomString(alnum, 12)
	ct, err := sealV3(key, nonce, originalType, plain)
	if err != nil {
		return v3Envelope{}, fmt.Errorf("encrypting the resource: %w", err)
	}
	return v3Envelope{
		ID: newEventID(), CreateTime: v3Time(now), ResourceType: "encrypt-resource", EventType: event, Summary: summary,
		Resource: v3EncryptedPayload{OriginalType: originalType, Algorithm: "AEAD_AES_256_GCM", Ciphertext: ct, AssociatedData: originalType, Nonce: nonce},
	}, nil
}

// v3PaymentNotificationLocked builds an APIv3 order's pay notification
// (TRANSACTION.SUCCESS, the Transaction encrypted as its resource) and
// how opts.V3Fault sends it. A failed payment has none: APIv3 notifies
// successes only (支付成功回调通知, pay.weixin.qq.com/doc/v3/merchant/
// 4012791882).
func (s *Simulator) v3PaymentNotificationLocked(o *order, txID string, fee int64, opts PayOptions, now time.Time, forger *rsa.PrivateKey) ([]byte, *v3Delivery, error) {
	m, ok := s.v3[o.MchID]
	if !ok {
		return nil, nil, fmt.Errorf("mch_id %s: %w", o.MchID, ErrNoV3)
	}
	if opts.Fail {
		return nil, nil, nil
	}
	plain, err := marshalV3(transaction(o, StateSuccess, txID, now, fee))
	if err != nil {
		return nil, nil, err
	}
	if len(opts.Extra) > 0 {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(plain, &fields); err != nil {
			return nil, nil, fmt.Errorf("adding extra fields: %w", err)
		}
		for _, f := range opts.Extra {
			v, err := marshalV3(f.Value)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: extra field %s: %w", ErrInvalidPayOptions, f.Name, err)
			}
			fields[f.Name] = v
		}
		if plain, err = marshalV3(fields); err != nil {
			return nil, nil, err
		}
	}
	env, err := newV3Envelope(m.apiKey, EventTransactionSuccess, "支付成功", "transaction", plain, now)
	if err != nil {
		return nil, nil, err
	}
	clean, err := marshalV3(env)
	if err != nil {
		return nil, nil, err
	}
	d := &v3Delivery{fault: opts.V3Fault, forger: forger}
	switch opts.V3Fault {
	case V3FaultWrongAPIv3Key:
		wrong := []byte(randomString(alnum, 32))
		bad, err := newV3Envelope(wrong, EventTransactionSuccess, "支付成功", "transaction", plain, now)
		if err != nil {
			return nil, nil, err
		}
		bad.ID = env.ID
		d.sent, err = marshalV3(bad)
		if err != nil {
			return nil, nil, err
		}
	case V3FaultBrokenTag:
		ct, err := base64.StdEncoding.DecodeString(env.Resource.Ciphertext)
		if err != nil {
			return nil, nil, fmt.Errorf("breaking the tag: %w", err)
		}
		ct[len(ct)-1] ^= 0x01
		bad := env
		bad.Resource.Ciphertext = base64.StdEncoding.EncodeToString(ct)
		if d.sent, err = marshalV3(bad); err != nil {
			return nil, nil, err
		}
	case V3FaultTamperedBody:
		bad := env
		bad.Summary = "支付成功（金额已修改）"
		if d.sent, err = marshalV3(bad); err != nil {
			return nil, nil, err
		}
		d.signed = clean
	}
	return clean, d, nil
}

// refundNotice is the resource of a v3 refund notification.
type refundNotice struct {
	MchID               string `json:"mchid"`
	OutTradeNo          string `json:"out_trade_no"`
	TransactionID       string `json:"transaction_id"`
	OutRefundNo         string `json:"out_refund_no"`
	RefundID            string `json:"refund_id"`
	RefundStatus        string `json:"refund_status"`
	SuccessTime         string `json:"success_time,omitempty"` // a success's only
	UserReceivedAccount string `json:"user_received_account"`
	Amount              struct {
		Total       int64 `json:"total"`
		Refund      int64 `json:"refund"`
		PayerTotal  int64 `json:"payer_total"`
		PayerRefund int64 `json:"payer_refund"`
	} `json:"amount"`
}

// notifyRefundV3Locked starts the notification of how a refund asked with
// APIv3 ended: REFUND.SUCCESS, REFUND.ABNORMAL or REFUND.CLOSED (退款结果
// 通知, pay.weixin.qq.com/doc/v3/merchant/4012791906).
func (s *Simulator) notifyRefundV3Locked(rf *refund) {
	what := fmt.Sprintf("refund %s of order %s of mch_id %s", rf.OutRefundNo, rf.OutTradeNo, rf.MchID)
	m, ok := s.v3[rf.MchID]
	if !ok {
		s.logf("wxpaysim: %s: the merchant no longer has APIv3: no notification", what)
		return
	}
	n := refundNotice{
		MchID: rf.MchID, OutTradeNo: rf.OutTradeNo, TransactionID: rf.TransactionID, OutRefundNo: rf.OutRefundNo,
		RefundID: rf.RefundID, RefundStatus: rf.v3Status(), UserReceivedAccount: RefundRecvAccountV3,
	}
	if rf.Status == RefundStatusSuccess {
		n.SuccessTime = v3Time(rf.SuccessAt)
	}
	eventType, summary := EventRefundSuccess, "退款成功"
	switch rf.Status {
	case RefundStatusChange:
		eventType, summary = EventRefundAbnormal, "退款异常"
	case RefundStatusClosed:
		eventType, summary = EventRefundClosed, "退款关闭"
	}
	n.Amount.Total, n.Amount.Refund, n.Amount.PayerTotal, n.Amount.PayerRefund = rf.TotalFee, rf.RefundFee, rf.TotalFee, rf.RefundFee
	plain, err := marshalV3(n)
	if err == nil {
		var env v3Envelope
		if env, err = newV3Envelope(m.apiKey, eventType, summary, "refund", plain, rf.endedAt); err == nil {
			plain, err = marshalV3(env)
		}
	}
	if err != nil {
		s.logf("wxpaysim: %s: cannot build the notification: %v", what, err)
		return
	}
	note := &notification{rec: NotificationRecord{
		Kind: KindRefund, MchID: rf.MchID, OutTradeNo: rf.OutTradeNo, TransactionID: rf.TransactionID,
		OutRefundNo: rf.OutRefundNo, URL: rf.NotifyURL, APIVersion: APIVersion3, Body: plain,
	}, v3: &v3Delivery{}}
	s.keepNotificationLocked(note)
	s.pending++ // a refund's outcome is notified whatever the limit: it was accepted
	s.wg.Add(1)
	go s.deliver(note)
}

// unknownSerialLike returns a serial of the same kind as serial that no
// merchant was given.
func unknownSerialLike(serial string) string {
	if strings.HasPrefix(serial, PublicKeyIDPrefix) {
		return PublicKeyIDPrefix + "01" + randomString(digits, 32)
	}
	return randomString("0123456789ABCDEF", 40)
}

// postV3 sends one attempt of an APIv3 notification, signed now, and
// judges the answer: HTTP 200 or 204, whatever the body, acknowledges.
func (s *Simulator) postV3(n *notification) (acked bool, status int, answer, problem, serial string) {
	now := s.now()
	s.mu.Lock()
	m, ok := s.v3[n.rec.MchID]
	var key signingKey
	if ok {
		key = m.notificationSigner(now)
	}
	s.mu.Unlock()
	if !ok {
		return false, 0, "", "the merchant no longer has APIv3: not sent", ""
	}
	d := n.v3
	ts := now
	switch d.fault {
	case V3FaultStaleTimestamp:
		ts = now.Add(-V3FaultSkew)
	case V3FaultFutureTimestamp:
		ts = now.Add(V3FaultSkew)
	}
	timestamp, nonce := strconv.FormatInt(ts.Unix(), 10), randomString(alnum, 32)
	signed := n.rec.Body
	if d.signed != nil {
		signed = d.signed
	}
	signer := key.key
	if d.fault == V3FaultForgedSignature {
		signer = d.forger
	}
	sig, err := signV3(signer, timestamp, nonce, signed)
	if err != nil {
		return false, 0, "", fmt.Sprintf("signing the notification: %v", err), ""
	}
	serial = key.serial
	switch d.fault {
	case V3FaultUnknownSerial:
		serial = unknownSerialLike(key.serial)
	case V3FaultSignTest:
		probe := make([]byte, 192)
		_, _ = rand.Read(probe)
		sig = SignTestPrefix + base64.StdEncoding.EncodeToString(probe)
	}
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, n.rec.URL, bytes.NewReader(n.rec.Body))
	if err != nil {
		return false, 0, "", fmt.Sprintf("building the request: %v", err), serial
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("Wechatpay-Timestamp", timestamp)
	h.Set("Wechatpay-Nonce", nonce)
	h.Set("Wechatpay-Signature", sig)
	h.Set("Wechatpay-Serial", serial)
	h.Set("Wechatpay-Signature-Type", SignatureTypeV3)
	resp, err := s.client.Do(req)
	if err != nil {
		return false, 0, "", err.Error(), serial
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerRead))
	answer = truncate(data, maxAttemptBody)
	switch {
	case err != nil:
		return false, resp.StatusCode, answer, fmt.Sprintf("reading the answer: %v", err), serial
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent:
		return false, resp.StatusCode, answer, fmt.Sprintf("HTTP status %d", resp.StatusCode), serial
	}
	return true, resp.StatusCode, answer, "", serial
}
