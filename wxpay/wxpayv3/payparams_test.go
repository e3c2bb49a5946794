package wxpayv3

import (
	"crypto/rsa"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The paySign and sign of vectors.json were made by Python's cryptography
// with the merchant key, and checked with `openssl dgst -sha256 -sign`,
// over the messages printed beside them in the file.
func TestJSAPIPayParamsVector(t *testing.T) {
	f := fx(t)
	v := f.v.JSAPI
	// The time zone of now does not matter: the timestamp is Unix seconds.
	now := time.Unix(v.Timestamp, 999_000_000).In(time.FixedZone("CST", 8*3600))
	pp, err := NewJSAPIPayParams(v.AppID, v.PrepayID, f.merchantKey, now, v.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	want := JSAPIPayParams{AppID: v.AppID, TimeStamp: itoa(v.Timestamp), NonceStr: v.Nonce, Package: "prepay_id=" + v.PrepayID, SignType: "RSA", PaySign: v.PaySign}
	if *pp != want {
		t.Fatalf("got\n%+v\nwant\n%+v", *pp, want)
	}
	if got := Message(pp.AppID, pp.TimeStamp, pp.NonceStr, pp.Package); got != v.Message {
		t.Fatalf("message %q, want %q", got, v.Message)
	}
	b, _ := json.Marshal(pp)
	wantJSON := map[string]any{"appId": v.AppID, "timeStamp": itoa(v.Timestamp), "nonceStr": v.Nonce,
		"package": "prepay_id=" + v.PrepayID, "signType": "RSA", "paySign": v.PaySign}
	if got := jsonMap(t, b); !reflect.DeepEqual(got, wantJSON) {
		t.Fatalf("JSON %s", b)
	}
}

func TestAPPPayParamsVector(t *testing.T) {
	f := fx(t)
	v := f.v.APP
	pp, err := NewAPPPayParams(v.AppID, v.MchID, v.PrepayID, f.merchantKey, time.Unix(v.Timestamp, 0), v.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	want := APPPayParams{AppID: v.AppID, PartnerID: v.MchID, PrepayID: v.PrepayID, Package: "Sign=WXPay", NonceStr: v.Nonce, Timestamp: itoa(v.Timestamp), Sign: v.Sign}
	if *pp != want {
		t.Fatalf("got\n%+v\nwant\n%+v", *pp, want)
	}
	if got := Message(pp.AppID, pp.Timestamp, pp.NonceStr, pp.PrepayID); got != v.Message {
		t.Fatalf("message %q, want %q", got, v.Message)
	}
	b, _ := json.Marshal(pp)
	wantJSON := map[string]any{"appid": v.AppID, "partnerid": v.MchID, "prepayid": v.PrepayID, "package": "Sign=WXPay",
		"noncestr": v.Nonce, "timestamp": itoa(v.Timestamp), "sign": v.Sign}
	if got := jsonMap(t, b); !reflect.DeepEqual(got, wantJSON) {
		t.Fatalf("JSON %s", b)
	}
}

func TestPayParamsRandomNonceAndErrors(t *testing.T) {
	f := fx(t)
	pub := f.merchantCert.PublicKey.(*rsa.PublicKey)
	pp, err := NewJSAPIPayParams("wx1", "p1", f.merchantKey, time.Unix(1, 0), "")
	if err != nil || len(pp.NonceStr) != 32 {
		t.Fatalf("%+v %v", pp, err)
	}
	if err := VerifySHA256WithRSA(pub, Message("wx1", "1", pp.NonceStr, "prepay_id=p1"), pp.PaySign); err != nil {
		t.Fatal(err)
	}
	ap, err := NewAPPPayParams("wx1", "m1", "p1", f.merchantKey, time.Unix(1, 0), "")
	if err != nil || len(ap.NonceStr) != 32 {
		t.Fatalf("%+v %v", ap, err)
	}
	if err := VerifySHA256WithRSA(pub, Message("wx1", "1", ap.NonceStr, "p1"), ap.Sign); err != nil {
		t.Fatal(err)
	}
	if _, err := NewJSAPIPayParams("", "p", f.merchantKey, time.Now(), "n"); err == nil {
		t.Error("no appid")
	}
	if _, err := NewJSAPIPayParams("a", "p", nil, time.Now(), "n"); err == nil {
		t.Error("no key")
	}
	if _, err := NewAPPPayParams("a", "", "p", f.merchantKey, time.Now(), "n"); err == nil {
		t.Error("no mchid")
	}
}
