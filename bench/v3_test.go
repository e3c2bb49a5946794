package bench

import (
	"crypto/rsa"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// BenchmarkV3OrderFloor is the cryptographic floor of an APIv3 JSAPI
// order: what the gateway cannot avoid per order, on every core — the
// request's signature, the answer's verification and the pay parameters'
// signature (two RSA-2048 signatures, one verification). bench/load.sh
// runs it in the same run as the order-v3 load and reports the gateway's
// orders per second over this benchmark's (1e9 / ns/op).
func BenchmarkV3OrderFloor(b *testing.B) {
	k, err := LoadV3Keys("..")
	if err != nil {
		b.Fatal(err)
	}
	signer := &wxpayv3.Signer{MchID: MchID, Serial: k.MerchantSerial, Key: k.Merchant}
	now := time.Now()
	h, body, err := V3PrepayAnswer(k.WeChat, now)
	if err != nil {
		b.Fatal(err)
	}
	v := &wxpayv3.Verifier{Keys: wxpayv3.NewKeySet(map[string]*rsa.PublicKey{V3PublicKeyID: &k.WeChat.PublicKey}), Now: func() time.Time { return now }}
	req := []byte(`{"appid":"` + AppID + `","mchid":"` + MchID + `","description":"` + OrderBody + `","out_trade_no":"B1","notify_url":"` + NotifyURL + `","amount":{"total":1,"currency":"CNY"},"payer":{"openid":"` + OpenID + `"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := signer.Authorization("POST", "/v3/pay/transactions/jsapi", req, now.Unix(), Nonce); err != nil {
				b.Error(err)
				return
			}
			if err := v.Verify(h, body); err != nil {
				b.Error(err)
				return
			}
			if _, err := wxpayv3.NewJSAPIPayParams(AppID, PrepayID, k.Merchant, now, Nonce); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
