package wxpay

import (
	"testing"
	"time"
)

// BenchmarkVerifyNotification decodes and verifies WeChat's example
// notification (re-signed with MD5), the work of every pay notification.
func BenchmarkVerifyNotification(b *testing.B) {
	body := exampleSignedMD5()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := VerifyNotification(body, officialKey); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeXMLUnifiedOrder encodes a signed unifiedorder request, as
// Client.Call sends it.
func BenchmarkEncodeXMLUnifiedOrder(b *testing.B) {
	r := validOrder(TradeTypeJSAPI)
	r.Attach = "说明"
	p := r.Params()
	p = append(p, Param{"mch_id", "10000100"}, Param{"nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"}, Param{"sign_type", "HMAC-SHA256"})
	p = append(p, Param{"sign", refSign(p, officialKey, SignTypeHMACSHA256)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeXML(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSAPIPayParams(b *testing.B) {
	now := time.Unix(ppUnix, 0)
	for _, st := range []SignType{SignTypeMD5, SignTypeHMACSHA256} {
		b.Run(string(st), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewJSAPIPayParams(ppAppID, ppPrepayID, officialKey, st, now, ppNonce); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
