package wxpayv3

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// notifyVerifier verifies the notification vectors at their time.
func notifyVerifier(f *fixture, at string) *Verifier {
	ts, _ := parseUnix(at)
	return &Verifier{Keys: testKeys(f), Now: func() time.Time { return time.Unix(ts, 0) }}
}

// The notifications of vectors.json were made by Python: the resource
// encrypted with AESGCM under the APIv3 key, the pretty-printed body signed
// with the WeChat Pay public key's private half.
func TestParseNotificationVectors(t *testing.T) {
	f := fx(t)
	for _, v := range f.v.Notifications {
		t.Run(v.Name, func(t *testing.T) {
			h := headerOf(v.Headers)
			n, err := ParseNotification(notifyVerifier(f, v.Headers[HeaderTimestamp]), f.key, h, []byte(v.Body))
			if err != nil {
				t.Fatal(err)
			}
			if n.EventType != v.EventType || n.ID != "EV-2018022511223320873" || n.ResourceType != "encrypt-resource" ||
				n.CreateTime != "2026-01-01T08:00:00+08:00" || n.Resource.OriginalType == "" {
				t.Fatalf("envelope %+v", n.Notification)
			}
			if string(n.Plaintext) != v.Plaintext {
				t.Fatalf("plaintext %s, want %s", n.Plaintext, v.Plaintext)
			}
			switch v.EventType {
			case EventTransactionSuccess:
				if n.Summary != "支付成功" {
					t.Errorf("summary %q", n.Summary)
				}
				tx, err := n.Transaction()
				if err != nil {
					t.Fatal(err)
				}
				if tx.OutTradeNo != "1217752501201407033233368018" || tx.TradeState != TradeStateSuccess || tx.Amount == nil ||
					tx.Amount.Total != 100 || tx.Amount.PayerTotal != 100 || tx.Payer == nil || tx.Payer.OpenID != "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" ||
					tx.TransactionID != "4200000000202601010000000001" || tx.MchID != f.v.MchID || tx.TradeStateDesc != "支付成功" {
					t.Errorf("transaction %+v", tx)
				}
				if !bytes.Equal(tx.Raw, n.Plaintext) {
					t.Errorf("Raw %s", tx.Raw)
				}
				if _, err := n.RefundNotice(); err == nil {
					t.Error("a transaction read as a refund")
				}
			case EventRefundSuccess:
				r, err := n.RefundNotice()
				if err != nil {
					t.Fatal(err)
				}
				want := RefundAmount{Total: 100, Refund: 40, PayerTotal: 100, PayerRefund: 40}
				if r.OutRefundNo != "R1217752501201407033233368018" || r.RefundStatus != RefundStatusSuccess || r.Amount != want ||
					r.UserReceivedAccount != "支付用户零钱" || r.RefundID == "" || r.MchID != f.v.MchID {
					t.Errorf("refund notice %+v", r)
				}
				if !bytes.Equal(r.Raw, n.Plaintext) {
					t.Errorf("Raw %s", r.Raw)
				}
				if _, err := n.Transaction(); err == nil {
					t.Error("a refund read as a transaction")
				}
			default:
				t.Fatalf("event %s", v.EventType)
			}
		})
	}
}

// Where integrations break, 1: the body is re-serialised before it is
// verified.
func TestParseNotificationNeedsRawBody(t *testing.T) {
	f := fx(t)
	v := f.v.Notifications[0]
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(v.Body)); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal([]byte(v.Body), &m)
	reencoded, _ := json.Marshal(m)
	for _, body := range [][]byte{compact.Bytes(), reencoded, []byte(strings.TrimSuffix(v.Body, "\n"))} {
		_, err := ParseNotification(notifyVerifier(f, v.Headers[HeaderTimestamp]), f.key, headerOf(v.Headers), body)
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("re-encoded body: err = %v", err)
		}
	}
}

func TestParseNotificationVerifiesFirst(t *testing.T) {
	f := fx(t)
	v := f.v.Notifications[0]
	ver := notifyVerifier(f, v.Headers[HeaderTimestamp])
	var missing *MissingHeaderError
	// Unsigned: refused for that, whatever the body.
	for _, body := range []string{"", "not json", `{"id":"x"}`, v.Body} {
		if _, err := ParseNotification(ver, f.key, nil, []byte(body)); !errors.As(err, &missing) {
			t.Errorf("unsigned %q: %v", body, err)
		}
	}
	// A probe.
	h := headerOf(v.Headers)
	h.Set(HeaderSignature, "WECHATPAY/SIGNTEST/"+h.Get(HeaderSignature))
	if _, err := ParseNotification(ver, f.key, h, []byte(v.Body)); !errors.Is(err, ErrSignTest) {
		t.Errorf("SIGNTEST: %v", err)
	}
	// Signed, but the APIv3 key is another: verified, then not decrypted.
	_, err := ParseNotification(ver, APIv3Key(strings.Repeat("0", 32)), headerOf(v.Headers), []byte(v.Body))
	if !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong key: %v", err)
	}
	errorContains(t, err, "EV-2018022511223320873", "TRANSACTION.SUCCESS")
}

// Envelopes that verify (signed here with the test key of the WeChat Pay
// public key) but lack what a notification needs.
func TestParseNotificationFields(t *testing.T) {
	f := fx(t)
	now := f.now
	ver := &Verifier{Keys: testKeys(f), Now: func() time.Time { return now }}
	res, err := EncryptResource(f.key, "abcdefghijkl", "transaction", []byte(`{"out_trade_no":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	envelope := func(change func(m map[string]any)) []byte {
		m := map[string]any{
			"id": "EV-1", "create_time": "2026-01-01T08:00:00+08:00", "event_type": "TRANSACTION.SUCCESS",
			"resource_type": "encrypt-resource", "summary": "支付成功", "new_field": []int{1},
			"resource": map[string]any{"algorithm": res.Algorithm, "ciphertext": res.Ciphertext, "nonce": res.Nonce,
				"associated_data": res.AssociatedData, "original_type": "transaction", "new": true},
		}
		change(m)
		b, _ := json.Marshal(m)
		return b
	}
	resource := func(m map[string]any) map[string]any { return m["resource"].(map[string]any) }
	for _, tt := range []struct {
		name   string
		body   []byte
		field  string // the field named in the error; "" when it parses
		errMsg string
	}{
		{"complete, unknown fields", envelope(func(map[string]any) {}), "", ""},
		{"empty associated data is fine when it was empty", nil, "", ""},
		{"no id", envelope(func(m map[string]any) { delete(m, "id") }), "id", ""},
		{"no event_type", envelope(func(m map[string]any) { m["event_type"] = "" }), "event_type", ""},
		{"no resource", envelope(func(m map[string]any) { delete(m, "resource") }), "resource.algorithm", ""},
		{"no ciphertext", envelope(func(m map[string]any) { delete(resource(m), "ciphertext") }), "resource.ciphertext", ""},
		{"no nonce", envelope(func(m map[string]any) { delete(resource(m), "nonce") }), "resource.nonce", ""},
		{"other algorithm", envelope(func(m map[string]any) { resource(m)["algorithm"] = "AEAD_SM4_GCM" }), "", "AEAD_SM4_GCM"},
		{"id of the wrong type", envelope(func(m map[string]any) { m["id"] = 5 }), "", "not a JSON notification"},
		{"not JSON", []byte("<xml></xml>"), "", "not a JSON notification"},
		{"JSON null", []byte("null"), "id", ""},
		{"trailing data", append(envelope(func(map[string]any) {}), "{}"...), "", "not a JSON notification"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body
			if body == nil {
				r2, _ := EncryptResource(f.key, "abcdefghijkl", "", []byte(`{"out_trade_no":"1"}`))
				body = envelope(func(m map[string]any) {
					resource(m)["ciphertext"], resource(m)["associated_data"] = r2.Ciphertext, ""
				})
			}
			h := signAnswer(t, f.wechatKey, f.v.PublicKeyID, now.Unix(), "nonce", body)
			n, err := ParseNotification(ver, f.key, h, body)
			switch {
			case tt.field != "":
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("err = %v, want a FieldError on %s", err, tt.field)
				}
			case tt.errMsg != "":
				errorContains(t, err, tt.errMsg)
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(n.Plaintext) != `{"out_trade_no":"1"}` || n.ID != "EV-1" {
					t.Fatalf("%+v", n)
				}
			}
		})
	}
}

func TestNotifyReplyFailure(t *testing.T) {
	for _, msg := range []string{"", "签名错误", `quote " and \ backslash`, "line\nbreak\t<tag>&", "\xff invalid"} {
		b := NotifyReplyFailure(msg)
		var got struct{ Code, Message string }
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", msg, b, err)
		}
		want := strings.ToValidUTF8(msg, "\ufffd")
		if got.Code != "FAIL" || got.Message != want {
			t.Errorf("%q: %s", msg, b)
		}
	}
	if got := string(NotifyReplyFailure("x")); got != `{"code":"FAIL","message":"x"}` {
		t.Errorf("got %s", got)
	}
}
