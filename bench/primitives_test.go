package bench

// Micro-benchmarks of the work the gateway does per order and per
// notification, without network. Run them with
//
//	go test ./bench -run '^$' -bench . -benchmem
//
// CI runs them with -benchtime=1x, so each checks its own result and fails
// on an error even at one iteration.
//
// The targets of issue #5 that these measure:
//
//	v2 sign ≤ 1 µs and ≤ 2 allocations for 11 fields;
//	notify verification + XML decode ≤ 8 µs.

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/event"
	"github.com/caddy-wxpay/caddy-wxpay/gateway/apiv2"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// payNow is a fixed clock for the pay parameters.
var payNow = time.Unix(1795766400, 0)

// signedEleven returns ElevenFields with its sign appended.
func signedEleven(b *testing.B, st wxpay.SignType) wxpay.Params {
	b.Helper()
	p := ElevenFields()
	sign, err := wxpay.Sign(p, Key, st)
	if err != nil {
		b.Fatal(err)
	}
	return append(p, wxpay.Param{Name: "sign", Value: sign})
}

// signedUnifiedOrderRequest is the document Client.Call sends for
// OrderRequest: the request's fields, mch_id, nonce_str and sign.
func signedUnifiedOrderRequest(b *testing.B) wxpay.Params {
	b.Helper()
	p := OrderRequest("1415659990").Params()
	p = append(p, wxpay.Param{Name: "mch_id", Value: MchID}, wxpay.Param{Name: "nonce_str", Value: Nonce})
	sign, err := wxpay.Sign(p, Key, wxpay.SignTypeMD5)
	if err != nil {
		b.Fatal(err)
	}
	return append(p, wxpay.Param{Name: "sign", Value: sign})
}

func unifiedOrderReply(b *testing.B) []byte {
	b.Helper()
	reply, err := UnifiedOrderReply()
	if err != nil {
		b.Fatal(err)
	}
	return reply
}

func notification(b *testing.B) []byte {
	b.Helper()
	doc, err := Notification("bench", 1)
	if err != nil {
		b.Fatal(err)
	}
	return doc
}

// BenchmarkSign signs the eleven fields of a unifiedorder request.
// Target (issue #5): v2 sign ≤ 1 µs and ≤ 2 allocations for 11 fields.
func BenchmarkSign(b *testing.B) {
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		b.Run(string(st), func(b *testing.B) {
			p := ElevenFields()
			if len(p) != 11 {
				b.Fatalf("%d fields, want 11", len(p))
			}
			want := signedEleven(b, st).Get("sign")
			if len(want) != map[wxpay.SignType]int{wxpay.SignTypeMD5: 32, wxpay.SignTypeHMACSHA256: 64}[st] {
				b.Fatalf("sign %q has the wrong length for %s", want, st)
			}
			b.ReportAllocs()
			var sign string
			for b.Loop() {
				var err error
				if sign, err = wxpay.Sign(p, Key, st); err != nil {
					b.Fatal(err)
				}
			}
			if sign != want {
				b.Fatalf("sign %q, want %q", sign, want)
			}
		})
	}
}

// BenchmarkSignBaselineMD5 is md5.Sum alone over the canonical string that
// BenchmarkSign/MD5 hashes (the eleven fields and &key=…), the part of
// signing that no implementation avoids: BENCHMARKS.md reports Sign as a
// ratio to this, measured in the same run.
func BenchmarkSignBaselineMD5(b *testing.B) {
	p := ElevenFields()
	names := make([]string, 0, len(p))
	for _, f := range p {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	var canonical []byte
	for _, name := range names {
		canonical = append(canonical, name+"="+p.Get(name)+"&"...)
	}
	canonical = append(canonical, "key="+string(Key)...)
	want, err := wxpay.Sign(p, Key, wxpay.SignTypeMD5)
	if err != nil {
		b.Fatal(err)
	}
	if d := md5.Sum(canonical); strings.ToUpper(hex.EncodeToString(d[:])) != want {
		b.Fatalf("the canonical string %q is not the one Sign hashes", canonical)
	}
	b.SetBytes(int64(len(canonical)))
	b.ReportAllocs()
	var d [md5.Size]byte
	for b.Loop() {
		d = md5.Sum(canonical)
	}
	if strings.ToUpper(hex.EncodeToString(d[:])) != want {
		b.Fatal("md5.Sum changed its answer")
	}
}

// BenchmarkVerify verifies the sign of the eleven fields.
// Target (issue #5): as signing, v2 sign ≤ 1 µs and ≤ 2 allocations for 11
// fields; verifying is a signature and a constant-time comparison.
func BenchmarkVerify(b *testing.B) {
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		b.Run(string(st), func(b *testing.B) {
			p := signedEleven(b, st)
			bad := p.Clone()
			bad.Set("total_fee", "2")
			if err := wxpay.Verify(bad, Key, st); err == nil {
				b.Fatal("a tampered document verified")
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := wxpay.Verify(p, Key, st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeXMLUnifiedOrder encodes the signed unifiedorder request
// the gateway sends WeChat for an order.
// Target (issue #5): part of the order path, which must keep ≥ 0.8× the
// req/s of a plain reverse_proxy hop at ≤ 1.25× its CPU per request.
func BenchmarkEncodeXMLUnifiedOrder(b *testing.B) {
	p := signedUnifiedOrderRequest(b)
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		var err error
		if out, err = wxpay.EncodeXML(p); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(out)))
	back, err := wxpay.DecodeXML(out)
	if err != nil {
		b.Fatal(err)
	}
	if err := wxpay.Verify(back, Key, wxpay.SignTypeMD5); err != nil {
		b.Fatalf("encoded request does not verify: %v", err)
	}
}

// BenchmarkDecodeXMLUnifiedOrderReply decodes WeChat's signed answer to a
// unifiedorder.
// Target (issue #5): part of the order path (≥ 0.8× plain reverse_proxy
// req/s, ≤ 1.25× its CPU per request).
func BenchmarkDecodeXMLUnifiedOrderReply(b *testing.B) {
	reply := unifiedOrderReply(b)
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	var p wxpay.Params
	for b.Loop() {
		var err error
		if p, err = wxpay.DecodeXML(reply); err != nil {
			b.Fatal(err)
		}
	}
	if got := p.Get("prepay_id"); got != PrepayID {
		b.Fatalf("prepay_id %q, want %q", got, PrepayID)
	}
}

// BenchmarkDecodeXMLNotification decodes a pay notification (15 fields).
// Target (issue #5): notify verification + XML decode ≤ 8 µs, of which
// this is the decode.
func BenchmarkDecodeXMLNotification(b *testing.B) {
	doc := notification(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var p wxpay.Params
	for b.Loop() {
		var err error
		if p, err = wxpay.DecodeXML(doc); err != nil {
			b.Fatal(err)
		}
	}
	if len(p) != 15 {
		b.Fatalf("%d fields, want 15", len(p))
	}
}

// BenchmarkVerifyNotification decodes and verifies a signed pay
// notification, what the gateway does first with every notification.
// Target (issue #5): notify verification + XML decode ≤ 8 µs.
func BenchmarkVerifyNotification(b *testing.B) {
	doc := notification(b)
	tampered := bytes.Replace(doc, []byte("<total_fee><![CDATA[1]]>"), []byte("<total_fee><![CDATA[2]]>"), 1)
	if bytes.Equal(tampered, doc) {
		b.Fatal("could not tamper with the notification")
	}
	if _, err := wxpay.VerifyNotification(tampered, Key); err == nil {
		b.Fatal("a tampered notification verified")
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var n *wxpay.Notification
	for b.Loop() {
		var err error
		if n, err = wxpay.VerifyNotification(doc, Key); err != nil {
			b.Fatal(err)
		}
	}
	if n.MchID() != MchID || !n.Succeeded() {
		b.Fatalf("notification for %q, succeeded %v", n.MchID(), n.Succeeded())
	}
}

// BenchmarkNotificationToEvent is the gateway's whole computation per
// notification before the event is stored or delivered: verify and parse
// (API v2 through the gateway's protocol interface), check the merchant,
// build the event, encode its JSON and sign the delivery.
// Target (issue #5): includes notify verification + XML decode (≤ 8 µs);
// the rest bounds the intake rate that durable storage must keep at ≥ 0.5×.
func BenchmarkNotificationToEvent(b *testing.B) {
	doc := notification(b)
	secret := []byte(UpstreamSecret)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var (
		payload []byte
		h       = make(map[string][]string, 4)
	)
	api := apiv2.New(&wxpay.Client{MchID: MchID, Key: Key})
	for b.Loop() {
		p, err := api.ParsePaymentNotification(nil, doc)
		if err != nil {
			b.Fatal(err)
		}
		if p.MchID != MchID || p.AppID != AppID {
			b.Fatalf("notification for %s/%s", p.MchID, p.AppID)
		}
		ev := event.NewPayment(p.MchID, p.TransactionID, p.OutTradeNo, p.Succeeded, p.Data, payNow)
		if payload, err = ev.Marshal(); err != nil {
			b.Fatal(err)
		}
		event.SetHeaders(h, secret, ev.ID, payNow, payload)
	}
	if err := event.Verify(secret, h, payload, 0, payNow); err != nil {
		b.Fatalf("delivery does not verify: %v", err)
	}
}

// BenchmarkJSAPIPayParams signs the six values of wx.requestPayment.
// Target (issue #5): part of the order path (≥ 0.8× plain reverse_proxy
// req/s, ≤ 1.25× its CPU per request).
func BenchmarkJSAPIPayParams(b *testing.B) {
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		b.Run(string(st), func(b *testing.B) {
			b.ReportAllocs()
			var pp *wxpay.JSAPIPayParams
			for b.Loop() {
				var err error
				if pp, err = wxpay.NewJSAPIPayParams(AppID, PrepayID, Key, st, payNow, Nonce); err != nil {
					b.Fatal(err)
				}
			}
			err := wxpay.Verify(wxpay.Params{
				{Name: "appId", Value: pp.AppID}, {Name: "nonceStr", Value: pp.NonceStr},
				{Name: "package", Value: pp.Package}, {Name: "signType", Value: pp.SignType},
				{Name: "timeStamp", Value: pp.TimeStamp}, {Name: "sign", Value: pp.PaySign},
			}, Key, st)
			if err != nil {
				b.Fatalf("paySign does not verify: %v", err)
			}
		})
	}
}

// BenchmarkAPPPayParams signs the seven values of the Open SDK's PayReq.
// Target (issue #5): part of the order path (≥ 0.8× plain reverse_proxy
// req/s, ≤ 1.25× its CPU per request).
func BenchmarkAPPPayParams(b *testing.B) {
	for _, st := range []wxpay.SignType{wxpay.SignTypeMD5, wxpay.SignTypeHMACSHA256} {
		b.Run(string(st), func(b *testing.B) {
			b.ReportAllocs()
			var pp *wxpay.APPPayParams
			for b.Loop() {
				var err error
				if pp, err = wxpay.NewAPPPayParams(AppID, MchID, PrepayID, Key, st, payNow, Nonce); err != nil {
					b.Fatal(err)
				}
			}
			err := wxpay.Verify(wxpay.Params{
				{Name: "appid", Value: pp.AppID}, {Name: "noncestr", Value: pp.NonceStr},
				{Name: "package", Value: pp.Package}, {Name: "partnerid", Value: pp.PartnerID},
				{Name: "prepayid", Value: pp.PrepayID}, {Name: "timestamp", Value: pp.Timestamp},
				{Name: "sign", Value: pp.Sign},
			}, Key, st)
			if err != nil {
				b.Fatalf("sign does not verify: %v", err)
			}
		})
	}
}

// orderAnswer mirrors caddymodule.OrderResponse, the JSON the gateway
// answers a placed order with (kept here so that the benchmark does not
// pull in Caddy).
type orderAnswer struct {
	OutTradeNo string `json:"out_trade_no"`
	TradeType  string `json:"trade_type"`
	PrepayID   string `json:"prepay_id"`
	AppID      string `json:"app_id"`
	PayParams  any    `json:"pay_params,omitempty"`
	CodeURL    string `json:"code_url,omitempty"`
	MWebURL    string `json:"mweb_url,omitempty"`
}

// computeOrder is the gateway's computation for one JSAPI order, in the
// steps of wxpay.Client.Call, Client.UnifiedOrder and the handler, with the
// network call replaced by a fixed signed reply: build the unifiedorder
// params, add mch_id and nonce_str, sign, encode the XML, decode and verify
// the reply, sign the JSAPI pay parameters and encode the JSON answer.
func computeOrder(r *wxpay.UnifiedOrderRequest, reply []byte) ([]byte, int, error) {
	req := r.Params().Clone()
	req.Set("mch_id", MchID)
	req.Set("nonce_str", wxpay.NonceStr())
	req.Delete("sign_type")
	req.Delete("sign")
	sign, err := wxpay.Sign(req, Key, wxpay.SignTypeMD5)
	if err != nil {
		return nil, 0, err
	}
	req = append(req, wxpay.Param{Name: "sign", Value: sign})
	body, err := wxpay.EncodeXML(req)
	if err != nil {
		return nil, 0, err
	}
	p, err := wxpay.DecodeXML(reply)
	if err != nil {
		return nil, 0, err
	}
	if err := wxpay.Verify(p, Key, wxpay.SignTypeMD5); err != nil {
		return nil, 0, err
	}
	if p.Get("return_code") != "SUCCESS" || p.Get("result_code") != "SUCCESS" || p.Get("mch_id") != MchID {
		return nil, 0, errBadReply
	}
	prepayID := p.Get("prepay_id")
	pp, err := wxpay.NewJSAPIPayParams(r.AppID, prepayID, Key, wxpay.SignTypeMD5, payNow, wxpay.NonceStr())
	if err != nil {
		return nil, 0, err
	}
	out, err := json.Marshal(&orderAnswer{
		OutTradeNo: r.OutTradeNo, TradeType: r.TradeType, PrepayID: prepayID, AppID: r.AppID, PayParams: pp,
	})
	return out, len(body), err
}

var errBadReply = errors.New("reply is not a success for the test merchant")

// BenchmarkOrderComputation is the gateway's whole computation per order
// without network (see computeOrder).
// Target (issue #5): the order path must keep ≥ 0.8× the req/s of a plain
// reverse_proxy hop, at ≤ 1.25× its Caddy CPU per request; this is the
// part of that budget the protocol itself takes.
func BenchmarkOrderComputation(b *testing.B) {
	reply := unifiedOrderReply(b)
	r := OrderRequest("1415659990")
	if err := r.Validate(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		var err error
		if out, _, err = computeOrder(r, reply); err != nil {
			b.Fatal(err)
		}
	}
	var ans struct {
		PrepayID  string               `json:"prepay_id"`
		PayParams wxpay.JSAPIPayParams `json:"pay_params"`
	}
	if err := json.Unmarshal(out, &ans); err != nil {
		b.Fatal(err)
	}
	if ans.PrepayID != PrepayID || ans.PayParams.Package != "prepay_id="+PrepayID || ans.PayParams.PaySign == "" {
		b.Fatalf("unexpected answer %s", out)
	}
}

// BenchmarkOrderComputationWithInput adds what the handler does before
// computeOrder: decode the caller's JSON strictly and validate the order
// (the handler validates it, then Client.UnifiedOrder again).
// Target (issue #5): as BenchmarkOrderComputation.
func BenchmarkOrderComputationWithInput(b *testing.B) {
	reply := unifiedOrderReply(b)
	in := []byte(`{"out_trade_no":"1415659990","total_fee":1,"body":"` + OrderBody + `","trade_type":"JSAPI","openid":"` + OpenID + `"}`)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var o struct {
			OutTradeNo string          `json:"out_trade_no"`
			TotalFee   json.RawMessage `json:"total_fee"`
			Body       string          `json:"body"`
			TradeType  string          `json:"trade_type"`
			OpenID     string          `json:"openid,omitempty"`
		}
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			b.Fatal(err)
		}
		if strings.TrimSpace(string(o.TotalFee)) != "1" {
			b.Fatalf("total_fee %s", o.TotalFee)
		}
		r := OrderRequest(o.OutTradeNo)
		r.Body, r.TradeType, r.OpenID = o.Body, o.TradeType, o.OpenID
		for range 2 {
			if err := r.Validate(); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := computeOrder(r, reply); err != nil {
			b.Fatal(err)
		}
	}
}
