package wxpaysim

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// The AEAD_AES_256_GCM format, checked against wechatpay-go's public
// vector (utils/aes_test.go).
func TestV3GCMVector(t *testing.T) {
	got, err := sealV3([]byte("testAPIv3Key0000"), "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", []byte("Hello World"))
	if err != nil || got != "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC" {
		t.Fatalf("sealV3 = %q, %v", got, err)
	}
	plain, err := openGCM("testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", got)
	if err != nil || string(plain) != "Hello World" {
		t.Fatalf("openGCM = %q, %v", plain, err)
	}
}

func TestV3ConfigValidation(t *testing.T) {
	k := testV3Keys(t)
	valid := func() *MerchantV3 { return v3Config(t, modeBoth, 0.5) }
	tests := []struct {
		name   string
		change func(v *MerchantV3)
	}{
		{"short APIv3 key", func(v *MerchantV3) { v.APIv3Key = "0123456789abcdef" }},
		{"no merchant certificate", func(v *MerchantV3) { v.MerchantCertificate = nil }},
		{"no key at all", func(v *MerchantV3) { v.PublicKey, v.PublicKeyID, v.PlatformCertificates = nil, "", nil }},
		{"public key without id", func(v *MerchantV3) { v.PublicKeyID = "" }},
		{"id without public key", func(v *MerchantV3) { v.PublicKey = nil }},
		{"id without prefix", func(v *MerchantV3) { v.PublicKeyID = "0114232134912410000000000000000001" }},
		{"share above 1", func(v *MerchantV3) { v.PublicKeyShare = 1.5 }},
		{"certificate without key", func(v *MerchantV3) { v.PlatformCertificates[0].Key = nil }},
		{"certificate with another's key", func(v *MerchantV3) { v.PlatformCertificates[0].Key = k.other }},
		{"the same certificate twice", func(v *MerchantV3) {
			v.PlatformCertificates = append(v.PlatformCertificates, v.PlatformCertificates[0])
		}},
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid configuration: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := valid()
			v.PlatformCertificates = append([]PlatformCertificate(nil), v.PlatformCertificates...)
			tc.change(v)
			err := v.Validate()
			if !errors.Is(err, ErrInvalidV3) {
				t.Fatalf("Validate = %v, want ErrInvalidV3", err)
			}
			if strings.Contains(err.Error(), testAPIv3Key) {
				t.Errorf("the error quotes the APIv3 key: %v", err)
			}
		})
	}

	// New refuses the merchant's APIv3 (logged), keeps its API v2.
	var logs []string
	bad := valid()
	bad.APIv3Key = "short"
	e := newV3Env(t, Config{
		Merchants: []Merchant{{MchID: testMchID, Key: testKey, AppIDs: []string{appA}, V3: bad}},
		Logf:      func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) },
	}, modeBoth)
	if !strings.Contains(strings.Join(logs, "\n"), "APIv3 refused") {
		t.Errorf("the refusal is not logged: %v", logs)
	}
	r := e.client(t).get("/v3/certificates")
	if m := r.wantError(t, http.StatusUnauthorized, "SIGN_ERROR"); m["message"] != MsgV3NoAPIv3 {
		t.Errorf("message %q", m["message"])
	}
	if _, err := e.env.client(wxpay.SignTypeMD5).UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeAPP, "V2ONLY1", "https://example.com/n")); err != nil {
		t.Errorf("API v2 of a merchant whose APIv3 was refused: %v", err)
	}
	if err := e.sim.SetV3Signing(testMchID, true, false); !errors.Is(err, ErrNoV3) {
		t.Errorf("SetV3Signing: %v, want ErrNoV3", err)
	}
	if err := e.sim.SetV3Signing("nope", true, false); !errors.Is(err, ErrUnknownMerchant) {
		t.Errorf("SetV3Signing: %v, want ErrUnknownMerchant", err)
	}
}

func TestV3Authorization(t *testing.T) {
	e := newV3Env(t, Config{}, modePK)
	c := e.client(t)
	k := testV3Keys(t)
	valid := c.sign(http.MethodGet, "/v3/certificates", nil, strconv.FormatInt(t0.Unix(), 10), "n0nce", k.mchKey, testMchID, c.serial)
	params := strings.TrimPrefix(valid, "WECHATPAY2-SHA256-RSA2048 ")
	parts := strings.Split(params, ",")
	reordered := "WECHATPAY2-SHA256-RSA2048 " + strings.Join([]string{parts[4], parts[2], parts[0], parts[3], parts[1]}, ",")
	body := mustJSON(t, map[string]string{"mchid": testMchID})
	tests := []struct {
		name    string
		req     v3Req
		message string // "" for success
		signed  bool
	}{
		{"valid", v3Req{method: http.MethodGet, target: "/v3/certificates"}, "", true},
		{"fields in another order", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: reordered}, "", true},
		{"no Authorization", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: " "}, MsgV3AuthFormat, false},
		{"another scheme", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: "WECHATPAY2-SHA256-RSA4096 " + params}, MsgV3AuthScheme, false},
		{"bearer", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: "Bearer abc"}, MsgV3AuthScheme, false},
		{"a field missing", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: "WECHATPAY2-SHA256-RSA2048 " + strings.Join(parts[:4], ",")}, MsgV3AuthFormat, true},
		{"a field twice", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: valid + "," + parts[1]}, MsgV3AuthFormat, true},
		{"an unknown field", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: valid + `,extra="1"`}, MsgV3AuthFormat, true},
		{"unquoted", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: strings.Replace(valid, `mchid="`+testMchID+`"`, "mchid="+testMchID, 1)}, MsgV3AuthFormat, false},
		{"timestamp in ms", v3Req{method: http.MethodGet, target: "/v3/certificates", auth: strings.Replace(valid, strconv.FormatInt(t0.Unix(), 10), strconv.FormatInt(t0.UnixMilli(), 10), 1)}, MsgV3Timestamp, true},
		{"unknown mchid", v3Req{method: http.MethodGet, target: "/v3/certificates", mchID: "10000999"}, MsgV3UnknownMerchant, false},
		{"merchant without APIv3", v3Req{method: http.MethodGet, target: "/v3/certificates", mchID: "10000200"}, MsgV3NoAPIv3, false},
		{"wrong serial", v3Req{method: http.MethodGet, target: "/v3/certificates", serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"}, MsgV3Serial, true},
		{"lowercase serial", v3Req{method: http.MethodGet, target: "/v3/certificates", serial: strings.ToLower(c.serial)}, MsgV3Serial, true},
		{"stale timestamp", v3Req{method: http.MethodGet, target: "/v3/certificates", skew: -6 * time.Minute}, MsgV3Timestamp, true},
		{"future timestamp", v3Req{method: http.MethodGet, target: "/v3/certificates", skew: 6 * time.Minute}, MsgV3Timestamp, true},
		{"just within 5 minutes", v3Req{method: http.MethodGet, target: "/v3/certificates", skew: -299 * time.Second}, "", true},
		{"signed by another key", v3Req{method: http.MethodGet, target: "/v3/certificates", key: k.other}, MsgV3BadSignature, true},
		{"query not signed", v3Req{method: http.MethodGet, target: "/v3/certificates?algorithm_type=RSA", signTarget: "/v3/certificates"}, MsgV3BadSignature, true},
		{"query signed", v3Req{method: http.MethodGet, target: "/v3/certificates?algorithm_type=RSA"}, "", true},
		{"tampered body", v3Req{method: http.MethodPost, target: "/v3/pay/transactions/out-trade-no/AUTH-1/close", body: body, sent: mustJSON(t, map[string]string{"mchid": "10000200"})}, MsgV3BadSignature, true},
		{"body signed", v3Req{method: http.MethodPost, target: "/v3/pay/transactions/out-trade-no/AUTH-1/close", body: body}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := c.on(t)
			r := c.do(tc.req)
			if tc.message == "" {
				if r.status == http.StatusUnauthorized {
					t.Fatalf("HTTP %d: %s", r.status, r.body)
				}
			} else if m := r.wantError(t, http.StatusUnauthorized, "SIGN_ERROR"); m["message"] != tc.message {
				t.Errorf("message %q, want %q", m["message"], tc.message)
			}
			if r.header.Get("Request-ID") == "" {
				t.Error("no Request-ID")
			}
			if tc.signed {
				if serial := verifyV3Headers(t, r.header, r.body); serial != testPubKeyID {
					t.Errorf("signed by %s, want the public key", serial)
				}
			} else if r.header.Get("Wechatpay-Signature") != "" {
				t.Errorf("an answer to an unknown merchant is signed")
			}
		})
	}
	t.Run("detail of a bad signature", func(t *testing.T) {
		c := c.on(t)
		m := c.do(v3Req{method: http.MethodGet, target: "/v3/certificates", key: k.other}).object(t)
		d, _ := m["detail"].(map[string]any)
		if d["field"] != "signature" || d["location"] != "authorization" {
			t.Errorf("detail %v", m["detail"])
		}
	})
}

// Every answer — 200, 204, an error — is signed with the key the mode
// says, and verifies with an independent verifier.
func TestV3AnswersSigned(t *testing.T) {
	k := testV3Keys(t)
	certSerial := CertificateSerial(k.plat[0].Certificate)
	tests := []struct {
		mode, wechatSerial, want string
	}{
		{modePK, "", testPubKeyID},
		{modePK, certSerial, testPubKeyID},
		{modeCert, "", certSerial},
		{modeCert, testPubKeyID, certSerial},
		{modeBoth, "", testPubKeyID},
		{modeBoth, testPubKeyID, testPubKeyID},
		{modeBoth, certSerial, certSerial},
		{modeBoth, "4F1F0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C", testPubKeyID},
	}
	for _, tc := range tests {
		t.Run(tc.mode+"/"+tc.wechatSerial, func(t *testing.T) {
			e := newV3Env(t, Config{Logf: func(string, ...any) {}}, tc.mode)
			c := e.client(t)
			c.prepay("SIGNED-1", "https://example.com/n")
			answers := map[string]v3Resp{
				"200": c.do(v3Req{method: http.MethodGet, target: "/v3/pay/transactions/out-trade-no/SIGNED-1?mchid=" + testMchID, wechatSerial: tc.wechatSerial}),
				"204": c.do(v3Req{method: http.MethodPost, target: "/v3/pay/transactions/out-trade-no/SIGNED-1/close", body: mustJSON(t, map[string]string{"mchid": testMchID}), wechatSerial: tc.wechatSerial}),
				"404": c.do(v3Req{method: http.MethodGet, target: "/v3/pay/transactions/out-trade-no/NOPE-1?mchid=" + testMchID, wechatSerial: tc.wechatSerial}),
				"401": c.do(v3Req{method: http.MethodGet, target: "/v3/pay/transactions/out-trade-no/NOPE-1?mchid=" + testMchID, wechatSerial: tc.wechatSerial, key: k.other}),
			}
			for status, r := range answers {
				if strconv.Itoa(r.status) != status {
					t.Errorf("HTTP %d, want %s: %s", r.status, status, r.body)
					continue
				}
				if status == "204" && len(r.body) != 0 {
					t.Errorf("204 with a body %q", r.body)
				}
				if serial := verifyV3Headers(t, r.header, r.body); serial != tc.want {
					t.Errorf("%s signed by %s, want %s", status, serial, tc.want)
				}
			}
		})
	}
}

func TestV3Certificates(t *testing.T) {
	k := testV3Keys(t)
	t.Run("public key mode", func(t *testing.T) {
		e := newV3Env(t, Config{}, modePK)
		r := e.client(t).get("/v3/certificates")
		if m := r.wantError(t, http.StatusNotFound, "RESOURCE_NOT_EXISTS"); m["message"] != MsgNoPlatformCertificates {
			t.Errorf("message %q", m["message"])
		}
		if serial := verifyV3Headers(t, r.header, r.body); serial != testPubKeyID {
			t.Errorf("signed by %s", serial)
		}
		if n := e.sim.CertificateDownloads(testMchID); n != 1 {
			t.Errorf("%d downloads counted, want 1", n)
		}
	})
	for _, mode := range []string{modeCert, modeBoth} {
		t.Run(mode, func(t *testing.T) {
			e := newV3Env(t, Config{}, mode)
			if err := e.sim.RotatePlatformCertificate(testMchID, k.plat[1]); err != nil {
				t.Fatal(err)
			}
			c := e.client(t)
			for i := range 3 {
				r := c.get("/v3/certificates")
				r.wantStatus(t, http.StatusOK)
				serial := verifyV3Headers(t, r.header, r.body)
				var list struct {
					Data []struct {
						SerialNo           string `json:"serial_no"`
						EffectiveTime      string `json:"effective_time"`
						ExpireTime         string `json:"expire_time"`
						EncryptCertificate struct {
							Algorithm      string `json:"algorithm"`
							Nonce          string `json:"nonce"`
							AssociatedData string `json:"associated_data"`
							Ciphertext     string `json:"ciphertext"`
						} `json:"encrypt_certificate"`
					} `json:"data"`
				}
				if err := json.Unmarshal(r.body, &list); err != nil {
					t.Fatal(err)
				}
				if len(list.Data) != 2 {
					t.Fatalf("%d certificates listed, want 2: %s", len(list.Data), r.body)
				}
				listed := map[string]bool{}
				for j, d := range list.Data {
					want := k.plat[j].Certificate
					ec := d.EncryptCertificate
					if d.SerialNo != CertificateSerial(want) || ec.Algorithm != "AEAD_AES_256_GCM" || ec.AssociatedData != "certificate" || len(ec.Nonce) != 12 {
						t.Errorf("entry %d: %+v", j, d)
					}
					if d.EffectiveTime != "2020-01-01T08:00:00+08:00" || d.ExpireTime != "2040-01-01T08:00:00+08:00" {
						t.Errorf("entry %d times %s %s", j, d.EffectiveTime, d.ExpireTime)
					}
					plain, err := openGCM(testAPIv3Key, ec.Nonce, ec.AssociatedData, ec.Ciphertext)
					if err != nil {
						t.Fatalf("entry %d does not decrypt: %v", j, err)
					}
					block, _ := pem.Decode(plain)
					if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, want.Raw) {
						t.Errorf("entry %d decrypts to %q", j, plain)
					}
					listed[d.SerialNo] = true
				}
				if !listed[serial] {
					t.Errorf("signed by %s, which the answer does not list", serial)
				}
				if serial != CertificateSerial(k.plat[1].Certificate) {
					t.Errorf("signed by %s, want the newest certificate", serial)
				}
				if n := e.sim.CertificateDownloads(testMchID); n != i+1 {
					t.Errorf("%d downloads counted, want %d", n, i+1)
				}
			}
			// Other calls are not downloads.
			c.get("/v3/pay/transactions/out-trade-no/NOPE-1?mchid=" + testMchID)
			if n := e.sim.CertificateDownloads(testMchID); n != 3 {
				t.Errorf("%d downloads counted, want 3", n)
			}
		})
	}
}

func TestV3Prepay(t *testing.T) {
	e := newV3Env(t, Config{}, modePK)
	c := e.client(t)
	notify := "https://example.com/wxpay/v3/notify"
	type body = map[string]any
	with := func(b body, path string, v any) body {
		out := jsapiBody("", "")
		mustRoundTrip(t, b, &out)
		cur := out
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			next, _ := cur[k].(map[string]any)
			if next == nil {
				next = map[string]any{}
				cur[k] = next
			}
			cur = next
		}
		if v == nil {
			delete(cur, keys[len(keys)-1])
		} else {
			cur[keys[len(keys)-1]] = v
		}
		return out
	}
	base := func(no string) body { return jsapiBody(no, notify) }

	t.Run("trade types", func(t *testing.T) {
		c := c.on(t)
		tests := []struct {
			kind, field string
			pattern     *regexp.Regexp
			tradeType   string
			body        body
		}{
			{"jsapi", "prepay_id", prepayIDPattern, wxpay.TradeTypeJSAPI, base("P-JSAPI")},
			{"app", "prepay_id", prepayIDPattern, wxpay.TradeTypeAPP, with(base("P-APP1"), "payer", nil)},
			{"native", "code_url", codeURLPattern, wxpay.TradeTypeNative, with(base("P-NATIVE"), "payer", nil)},
			{"h5", "h5_url", regexp.MustCompile(`^https://wx\.tenpay\.com/cgi-bin/mmpayweb-bin/checkmweb\?prepay_id=wx20240501120000[0-9a-f]{20}&package=[0-9]{10}$`), wxpay.TradeTypeMWEB,
				with(with(base("P-H5-1"), "payer", nil), "scene_info", body{"payer_client_ip": "14.23.150.211", "h5_info": body{"type": "Wap"}})},
		}
		for _, tc := range tests {
			t.Run(tc.kind, func(t *testing.T) {
				c := c.on(t)
				r := c.post("/v3/pay/transactions/"+tc.kind, tc.body)
				r.wantStatus(t, http.StatusOK)
				verifyV3Headers(t, r.header, r.body)
				m := r.object(t)
				if len(m) != 1 || !tc.pattern.MatchString(fmt.Sprint(m[tc.field])) {
					t.Fatalf("answer %s, want only %s", r.body, tc.field)
				}
				o, ok := e.sim.Order(testMchID, tc.body["out_trade_no"].(string))
				if !ok || o.APIVersion != APIVersion3 || o.TradeType != tc.tradeType || o.TotalFee != 888 || o.State != StateNotPay ||
					o.Params.Get("body") != "腾讯充值中心-QQ会员充值" || o.NotifyURL != notify || o.AppID != appA {
					t.Errorf("order %+v", o)
				}
				again := c.post("/v3/pay/transactions/"+tc.kind, tc.body)
				again.wantStatus(t, http.StatusOK)
				if tc.kind == "h5" {
					// A new h5_url for the same prepay_id (a link opens
					// the sheet for 5 minutes; placing the order again
					// is how one gets a new one).
					first, second := fmt.Sprint(m["h5_url"]), fmt.Sprint(again.object(t)["h5_url"])
					if first == second || !strings.Contains(second, "prepay_id="+url.QueryEscape(o.PrepayID)) {
						t.Errorf("the same H5 order again answers %s, first %s: want a new h5_url for the same prepay_id", again.body, r.body)
					}
				} else if string(again.body) != string(r.body) {
					t.Errorf("the same order again answers %s, first %s", again.body, r.body)
				}
			})
		}
	})

	c.prepay("P-PAID", notify)
	pay(t, e.sim, "P-PAID", PayOptions{Lost: true})
	c.prepay("P-CLOSED", notify)
	if err := e.sim.CloseOrder(testMchID, "P-CLOSED"); err != nil {
		t.Fatal(err)
	}
	c.prepay("P-USED", notify)
	e.env.client(wxpay.SignTypeMD5).UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeJSAPI, "P-V2ORDER", notify)) //nolint:errcheck // checked below
	if _, ok := e.sim.Order(testMchID, "P-V2ORDER"); !ok {
		t.Fatal("the v2 order was not placed")
	}

	tests := []struct {
		name   string
		kind   string
		body   any
		status int
		code   string
		field  string // named by the message of a PARAM_ERROR
	}{
		{"paid", "jsapi", base("P-PAID"), 400, "ORDERPAID", ""},
		{"closed", "jsapi", base("P-CLOSED"), 400, "ORDER_CLOSED", ""},
		{"other content", "jsapi", with(base("P-USED"), "amount.total", 999), 403, "OUT_TRADE_NO_USED", ""},
		{"another trade type", "app", base("P-USED"), 403, "OUT_TRADE_NO_USED", ""},
		{"placed with API v2", "jsapi", base("P-V2ORDER"), 403, "OUT_TRADE_NO_USED", ""},
		{"appid of another merchant", "jsapi", with(base("P-ERR1"), "appid", "wx0000000000000000"), 400, "APPID_MCHID_NOT_MATCH", ""},
		{"mchid of another merchant", "jsapi", with(base("P-ERR1"), "mchid", "10000200"), 400, "INVALID_REQUEST", ""},
		{"no appid", "jsapi", with(base("P-ERR1"), "appid", nil), 400, "PARAM_ERROR", "/body/appid"},
		{"no mchid", "jsapi", with(base("P-ERR1"), "mchid", ""), 400, "PARAM_ERROR", "/body/mchid"},
		{"no description", "jsapi", with(base("P-ERR1"), "description", nil), 400, "PARAM_ERROR", "/body/description"},
		{"no out_trade_no", "jsapi", with(base("P-ERR1"), "out_trade_no", nil), 400, "PARAM_ERROR", "/body/out_trade_no"},
		{"no notify_url", "jsapi", with(base("P-ERR1"), "notify_url", nil), 400, "PARAM_ERROR", "/body/notify_url"},
		{"no amount", "jsapi", with(base("P-ERR1"), "amount", nil), 400, "PARAM_ERROR", "/body/amount"},
		{"no total", "jsapi", with(base("P-ERR1"), "amount.total", nil), 400, "PARAM_ERROR", "/body/amount/total"},
		{"jsapi without payer", "jsapi", with(base("P-ERR1"), "payer", nil), 400, "PARAM_ERROR", "/body/payer"},
		{"jsapi without openid", "jsapi", with(base("P-ERR1"), "payer.openid", nil), 400, "PARAM_ERROR", "/body/payer/openid"},
		{"h5 without scene_info", "h5", with(base("P-ERR1"), "payer", nil), 400, "PARAM_ERROR", "/body/scene_info"},
		{"h5 without h5_info.type", "h5", with(base("P-ERR1"), "scene_info", body{"payer_client_ip": "1.2.3.4", "h5_info": body{}}), 400, "PARAM_ERROR", "/body/scene_info/h5_info/type"},
		{"scene_info without ip", "native", with(base("P-ERR1"), "scene_info", body{"device_id": "x"}), 400, "PARAM_ERROR", "/body/scene_info/payer_client_ip"},
		{"bad ip", "native", with(base("P-ERR1"), "scene_info", body{"payer_client_ip": "1.2.3"}), 400, "PARAM_ERROR", "/body/scene_info/payer_client_ip"},
		{"zero total", "jsapi", with(base("P-ERR1"), "amount.total", 0), 400, "PARAM_ERROR", "/body/amount/total"},
		{"negative total", "jsapi", with(base("P-ERR1"), "amount.total", -1), 400, "PARAM_ERROR", "/body/amount/total"},
		{"total in yuan", "jsapi", with(base("P-ERR1"), "amount.total", 8.88), 400, "PARAM_ERROR", "/body/amount/total"},
		{"total as a string", "jsapi", with(base("P-ERR1"), "amount.total", "888"), 400, "PARAM_ERROR", "/body/amount/total"},
		{"currency USD", "jsapi", with(base("P-ERR1"), "amount.currency", "USD"), 400, "PARAM_ERROR", "/body/amount/currency"},
		{"description of 128 characters", "jsapi", with(base("P-ERR1"), "description", strings.Repeat("商", 128)), 400, "PARAM_ERROR", "/body/description"},
		{"attach of 129 characters", "jsapi", with(base("P-ERR1"), "attach", strings.Repeat("a", 129)), 400, "PARAM_ERROR", "/body/attach"},
		{"out_trade_no of 5", "jsapi", with(base("P-ERR1"), "out_trade_no", "P-E1X"), 400, "PARAM_ERROR", "/body/out_trade_no"},
		{"out_trade_no with a space", "jsapi", with(base("P-ERR1"), "out_trade_no", "P E123"), 400, "PARAM_ERROR", "/body/out_trade_no"},
		{"notify_url with a query", "jsapi", with(base("P-ERR1"), "notify_url", "https://example.com/n?a=1"), 400, "PARAM_ERROR", "/body/notify_url"},
		{"time_expire not RFC 3339", "jsapi", with(base("P-ERR1"), "time_expire", "20240501130000"), 400, "PARAM_ERROR", "/body/time_expire"},
		{"not JSON", "jsapi", []byte("appid=wx"), 400, "INVALID_REQUEST", ""},
		{"two JSON values", "jsapi", []byte(`{}{}`), 400, "INVALID_REQUEST", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := c.on(t)
			r := c.post("/v3/pay/transactions/"+tc.kind, tc.body)
			m := r.wantError(t, tc.status, tc.code)
			verifyV3Headers(t, r.header, r.body)
			if tc.field != "" && !strings.Contains(fmt.Sprint(m["message"]), "“"+tc.field+"”") {
				t.Errorf("message %q does not name %s", m["message"], tc.field)
			}
		})
	}
	if _, ok := e.sim.Order(testMchID, "P-ERR1"); ok {
		t.Error("a refused prepay placed an order")
	}

	t.Run("unknown fields accepted", func(t *testing.T) {
		c := c.on(t)
		b := with(with(base("P-EXTRA"), "support_fapiao", true), "detail", body{"cost_price": 888})
		c.post("/v3/pay/transactions/jsapi", b).wantStatus(t, http.StatusOK)
	})
	t.Run("time_expire", func(t *testing.T) {
		c := c.on(t)
		b := with(base("P-EXPIRE"), "time_expire", "2024-05-01T12:30:00+08:00")
		c.post("/v3/pay/transactions/jsapi", b).wantStatus(t, http.StatusOK)
		if o, _ := e.sim.Order(testMchID, "P-EXPIRE"); o.Params.Get("time_expire") != "20240501123000" {
			t.Errorf("time_expire %q", o.Params.Get("time_expire"))
		}
		e.clk.Advance(31 * time.Minute)
		defer e.clk.Advance(-31 * time.Minute)
		if _, err := e.sim.Pay(context.Background(), PayOptions{MchID: testMchID, OutTradeNo: "P-EXPIRE"}); !errors.Is(err, ErrOrderExpired) {
			t.Errorf("Pay after time_expire: %v", err)
		}
	})
	t.Run("content type", func(t *testing.T) {
		c := c.on(t)
		r := c.do(v3Req{method: http.MethodPost, target: "/v3/pay/transactions/jsapi", body: mustJSON(t, base("P-CT01")), contentType: "text/plain"})
		r.wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
		r = c.do(v3Req{method: http.MethodPost, target: "/v3/pay/transactions/jsapi", body: mustJSON(t, base("P-CT01")), contentType: "application/json; charset=utf-8"})
		r.wantStatus(t, http.StatusOK)
	})
	t.Run("method", func(t *testing.T) {
		c := c.on(t)
		r := c.get("/v3/pay/transactions/jsapi")
		r.wantError(t, http.StatusMethodNotAllowed, "INVALID_REQUEST")
		verifyV3Headers(t, r.header, r.body)
	})
	t.Run("too large", func(t *testing.T) {
		c := c.on(t)
		b := mustJSON(t, with(base("P-BIG"), "detail", strings.Repeat("x", MaxRequestSize)))
		c.do(v3Req{method: http.MethodPost, target: "/v3/pay/transactions/jsapi", body: b}).wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
	})
	t.Run("unknown routes", func(t *testing.T) {
		c := c.on(t)
		for _, p := range []string{"/v3/pay/transactions/micropay", "/v3/pay/transactions", "/v3/refund/domestic/refunds/a/b", "/v3/"} {
			if r := c.get(p); r.status != http.StatusNotFound {
				t.Errorf("GET %s: %d", p, r.status)
			}
		}
	})
}

func mustRoundTrip(t *testing.T, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

// A gateway switching a merchant from v2 to v3 mid-life sees the same
// payments: an order placed with one API is queried, closed and refunded
// with the other, with the same transaction_id.
func TestV3SharesV2State(t *testing.T) {
	e := newV3Env(t, Config{TimeScale: 1000}, modeCert)
	c := e.client(t)
	v2 := e.env.client(wxpay.SignTypeMD5)
	ctx := context.Background()
	for _, no := range []string{"X-V2-PAID", "X-V2-OPEN"} {
		if _, err := v2.UnifiedOrder(ctx, newOrder(wxpay.TradeTypeJSAPI, no, "https://example.com/n")); err != nil {
			t.Fatal(err)
		}
	}
	paid := pay(t, e.sim, "X-V2-PAID", PayOptions{Lost: true})

	t.Run("v2 order queried with v3", func(t *testing.T) {
		c := c.on(t)
		for _, target := range []string{"/v3/pay/transactions/out-trade-no/X-V2-PAID?mchid=" + testMchID, "/v3/pay/transactions/id/" + paid.TransactionID + "?mchid=" + testMchID} {
			r := c.get(target)
			r.wantStatus(t, http.StatusOK)
			verifyV3Headers(t, r.header, r.body)
			var tx map[string]any
			if err := json.Unmarshal(r.body, &tx); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"appid": appA, "mchid": testMchID, "out_trade_no": "X-V2-PAID", "transaction_id": paid.TransactionID, "trade_type": "JSAPI",
				"trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "CMC", "attach": "支付测试", "success_time": "2024-05-01T12:00:00+08:00",
				"payer":  map[string]any{"openid": testOpenID},
				"amount": map[string]any{"total": 888.0, "payer_total": 888.0, "currency": "CNY", "payer_currency": "CNY"},
			}
			if fmt.Sprint(tx) != fmt.Sprint(want) {
				t.Errorf("transaction\n got %v\nwant %v", tx, want)
			}
		}
	})
	t.Run("unpaid v2 order queried with v3", func(t *testing.T) {
		c := c.on(t)
		tx := c.get("/v3/pay/transactions/out-trade-no/X-V2-OPEN?mchid=" + testMchID).object(t)
		want := map[string]any{"appid": appA, "mchid": testMchID, "out_trade_no": "X-V2-OPEN", "trade_state": "NOTPAY", "trade_state_desc": "订单未支付",
			"payer": map[string]any{}, "amount": map[string]any{"total": 888.0, "payer_currency": "CNY"}}
		if fmt.Sprint(tx) != fmt.Sprint(want) {
			t.Errorf("transaction\n got %v\nwant %v", tx, want)
		}
	})
	t.Run("query errors", func(t *testing.T) {
		c := c.on(t)
		c.get("/v3/pay/transactions/out-trade-no/X-NOPE?mchid="+testMchID).wantError(t, http.StatusNotFound, "ORDER_NOT_EXIST")
		c.get("/v3/pay/transactions/id/4200000000000000000000000000?mchid="+testMchID).wantError(t, http.StatusNotFound, "ORDER_NOT_EXIST")
		m := c.get("/v3/pay/transactions/out-trade-no/X-V2-PAID").wantError(t, http.StatusBadRequest, "PARAM_ERROR")
		if !strings.Contains(fmt.Sprint(m["message"]), "/query/mchid") {
			t.Errorf("message %q", m["message"])
		}
		c.get("/v3/pay/transactions/out-trade-no/X-V2-PAID?mchid=10000200").wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
	})
	t.Run("v2 order refunded with v3", func(t *testing.T) {
		c := c.on(t)
		r := c.post("/v3/refund/domestic/refunds", map[string]any{
			"transaction_id": paid.TransactionID, "out_refund_no": "X-RF1", "amount": map[string]any{"refund": 100, "total": 888, "currency": "CNY"},
		})
		r.wantStatus(t, http.StatusOK)
		rf := r.object(t)
		if rf["out_trade_no"] != "X-V2-PAID" || rf["transaction_id"] != paid.TransactionID || rf["status"] != "PROCESSING" {
			t.Errorf("refund %s", r.body)
		}
		// v2 refundquery sees it, and the v3 query says REFUND.
		q, err := v2.QueryRefund(ctx, appA, "X-RF1")
		if err != nil || len(q.Refunds) != 1 || q.Refunds[0].RefundID != rf["refund_id"] {
			t.Fatalf("v2 refundquery: %+v, %v", q, err)
		}
		if s := c.get("/v3/pay/transactions/out-trade-no/X-V2-PAID?mchid=" + testMchID).object(t)["trade_state"]; s != "REFUND" {
			t.Errorf("trade_state %v", s)
		}
	})
	t.Run("v3 order through v2", func(t *testing.T) {
		c := c.on(t)
		c.prepay("X-V3-PAID", "https://example.com/n")
		c.prepay("X-V3-OPEN", "https://example.com/n")
		p := pay(t, e.sim, "X-V3-PAID", PayOptions{Lost: true})
		q, err := v2.QueryOrder(ctx, appA, "X-V3-PAID")
		if err != nil || q.TradeState != StateSuccess || q.TransactionID != p.TransactionID || q.TotalFee != 888 {
			t.Fatalf("v2 orderquery: %+v, %v", q, err)
		}
		if err := v2.CloseOrder(ctx, appA, "X-V3-OPEN"); err != nil {
			t.Fatalf("v2 closeorder: %v", err)
		}
		if o, _ := e.sim.Order(testMchID, "X-V3-OPEN"); o.State != StateClosed {
			t.Errorf("state %s", o.State)
		}
		if q, err := v2.QueryRefund(ctx, appA, "X-RF1"); err != nil || q.Refunds[0].RefundStatus == "" {
			t.Errorf("v2 refundquery of a v3 refund: %+v, %v", q, err)
		}
	})
	t.Run("close", func(t *testing.T) {
		c := c.on(t)
		c.prepay("X-CLOSE1", "https://example.com/n")
		closeIt := func(no string) v3Resp {
			return c.post("/v3/pay/transactions/out-trade-no/"+no+"/close", map[string]string{"mchid": testMchID})
		}
		closeIt("X-CLOSE1").wantStatus(t, http.StatusNoContent)
		if o, _ := e.sim.Order(testMchID, "X-CLOSE1"); o.State != StateClosed {
			t.Errorf("state %s", o.State)
		}
		closeIt("X-CLOSE1").wantStatus(t, http.StatusNoContent)
		closeIt("X-NOPE1").wantStatus(t, http.StatusNoContent)
		closeIt("X-V2-OPEN").wantStatus(t, http.StatusNoContent)
		closeIt("X-V2-PAID").wantError(t, http.StatusBadRequest, "ORDERPAID")
		c.post("/v3/pay/transactions/out-trade-no/X-CLOSE1/close", map[string]string{}).wantError(t, http.StatusBadRequest, "PARAM_ERROR")
		c.post("/v3/pay/transactions/out-trade-no/X-CLOSE1/close", map[string]string{"mch_id": testMchID}).wantError(t, http.StatusBadRequest, "PARAM_ERROR")
		if _, err := e.sim.Pay(ctx, PayOptions{MchID: testMchID, OutTradeNo: "X-CLOSE1"}); !errors.Is(err, ErrOrderClosed) {
			t.Errorf("Pay of a closed order: %v", err)
		}
	})
}

func TestV3Refund(t *testing.T) {
	ns := newV3NotifyServer(t, nil)
	e := newV3Env(t, Config{TimeScale: 0.002}, modePK) // refunds succeed after 10ms
	c := e.client(t)
	for _, no := range []string{"R-PAID", "R-FULL", "R-OPEN"} {
		c.prepay(no, ns.URL())
	}
	paid := pay(t, e.sim, "R-PAID", PayOptions{Lost: true})
	pay(t, e.sim, "R-FULL", PayOptions{Lost: true})
	refund := func(kv ...any) map[string]any {
		b := map[string]any{"out_trade_no": "R-PAID", "out_refund_no": "RF-1", "reason": "商品已售完", "notify_url": ns.URL(),
			"amount": map[string]any{"refund": 300, "total": 888, "currency": "CNY"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(b, kv[i].(string))
			} else {
				b[kv[i].(string)] = kv[i+1]
			}
		}
		return b
	}
	amount := func(refund, total any, currency string) map[string]any {
		m := map[string]any{"refund": refund, "total": total}
		if currency != "" {
			m["currency"] = currency
		}
		return m
	}

	first := c.post("/v3/refund/domestic/refunds", refund())
	first.wantStatus(t, http.StatusOK)
	verifyV3Headers(t, first.header, first.body)
	rf := first.object(t)
	if rf["status"] != "PROCESSING" || rf["transaction_id"] != paid.TransactionID || rf["channel"] != "ORIGINAL" ||
		rf["create_time"] != "2024-05-01T12:00:00+08:00" || rf["user_received_account"] != RefundRecvAccountV3 {
		t.Errorf("refund %s", first.body)
	}
	if a := rf["amount"].(map[string]any); a["refund"] != 300.0 || a["total"] != 888.0 || a["currency"] != "CNY" || a["payer_refund"] != 300.0 {
		t.Errorf("amount %v", a)
	}
	if !regexp.MustCompile(`^50000[0-9]{24}$`).MatchString(fmt.Sprint(rf["refund_id"])) {
		t.Errorf("refund_id %v", rf["refund_id"])
	}

	tests := []struct {
		name   string
		body   map[string]any
		status int
		code   string
		field  string
	}{
		{"the same refund again", refund(), 200, "", ""},
		{"by transaction_id", refund("out_trade_no", nil, "transaction_id", paid.TransactionID), 200, "", ""},
		{"the same number, another amount", refund("amount", amount(301, 888, "CNY")), 400, "INVALID_REQUEST", ""},
		{"the same number, another order", refund("out_trade_no", "R-FULL"), 400, "INVALID_REQUEST", ""},
		{"total not the order's", refund("out_refund_no", "RF-2", "amount", amount(100, 889, "CNY")), 400, "INVALID_REQUEST", ""},
		{"more than is left", refund("out_refund_no", "RF-2", "amount", amount(589, 888, "CNY")), 400, "INVALID_REQUEST", ""},
		{"an order not paid", refund("out_trade_no", "R-OPEN", "out_refund_no", "RF-3"), 404, "RESOURCE_NOT_EXISTS", ""},
		{"an unknown order", refund("out_trade_no", "R-NOPE", "out_refund_no", "RF-3"), 404, "RESOURCE_NOT_EXISTS", ""},
		{"no order named", refund("out_trade_no", nil, "out_refund_no", "RF-3"), 400, "PARAM_ERROR", "/body/out_trade_no"},
		{"no out_refund_no", refund("out_refund_no", nil), 400, "PARAM_ERROR", "/body/out_refund_no"},
		{"no amount", refund("amount", nil), 400, "PARAM_ERROR", "/body/amount"},
		{"no refund amount", refund("amount", map[string]any{"total": 888, "currency": "CNY"}), 400, "PARAM_ERROR", "/body/amount/refund"},
		{"no currency", refund("out_refund_no", "RF-3", "amount", amount(100, 888, "")), 400, "PARAM_ERROR", "/body/amount/currency"},
		{"refund above total", refund("out_refund_no", "RF-3", "amount", amount(889, 888, "CNY")), 400, "PARAM_ERROR", "/body/amount/refund"},
		{"zero refund", refund("out_refund_no", "RF-3", "amount", amount(0, 888, "CNY")), 400, "PARAM_ERROR", "/body/amount/refund"},
		{"reason of 81 characters", refund("out_refund_no", "RF-3", "reason", strings.Repeat("退", 81)), 400, "PARAM_ERROR", "/body/reason"},
		{"bad funds_account", refund("out_refund_no", "RF-3", "funds_account", "BASIC"), 400, "PARAM_ERROR", "/body/funds_account"},
		{"bad out_refund_no", refund("out_refund_no", "RF 3"), 400, "PARAM_ERROR", "/body/out_refund_no"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := c.on(t)
			r := c.post("/v3/refund/domestic/refunds", tc.body)
			verifyV3Headers(t, r.header, r.body)
			if tc.code == "" {
				r.wantStatus(t, tc.status)
				if got := r.object(t)["refund_id"]; got != rf["refund_id"] {
					t.Errorf("refund_id %v, want the first %v", got, rf["refund_id"])
				}
				return
			}
			m := r.wantError(t, tc.status, tc.code)
			if tc.field != "" && !strings.Contains(fmt.Sprint(m["message"]), "“"+tc.field+"”") {
				t.Errorf("message %q does not name %s", m["message"], tc.field)
			}
		})
	}
	if n := len(e.sim.Refunds()); n != 1 {
		t.Fatalf("%d refunds, want 1", n)
	}

	// The rest of the order, then nothing more.
	c.post("/v3/refund/domestic/refunds", refund("out_refund_no", "RF-4", "amount", amount(588, 888, "CNY"), "notify_url", nil, "funds_account", "AVAILABLE")).wantStatus(t, http.StatusOK)
	c.post("/v3/refund/domestic/refunds", refund("out_refund_no", "RF-5", "amount", amount(1, 888, "CNY"))).wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
	// The merchant's balance: only a fault makes it short.
	e.sim.FailNext(APIV3Refund, 1, "NOT_ENOUGH")
	r := c.post("/v3/refund/domestic/refunds", refund("out_trade_no", "R-FULL", "out_refund_no", "RF-6"))
	r.wantError(t, http.StatusForbidden, "NOT_ENOUGH")
	verifyV3Headers(t, r.header, r.body)

	waitFor(t, "the refunds' success", func() bool {
		for _, rf := range e.sim.Refunds() {
			if rf.Status != RefundStatusSuccess {
				return false
			}
		}
		return true
	})
	q := c.get("/v3/refund/domestic/refunds/RF-1")
	q.wantStatus(t, http.StatusOK)
	verifyV3Headers(t, q.header, q.body)
	if m := q.object(t); m["status"] != "SUCCESS" || m["success_time"] == nil || m["refund_id"] != rf["refund_id"] || m["funds_account"] != "UNSETTLED" {
		t.Errorf("refund query %s", q.body)
	}
	if m := c.get("/v3/refund/domestic/refunds/RF-4").object(t); m["funds_account"] != "AVAILABLE" {
		t.Errorf("funds_account %v", m["funds_account"])
	}
	c.get("/v3/refund/domestic/refunds/RF-NOPE").wantError(t, http.StatusNotFound, "RESOURCE_NOT_EXISTS")

	// One REFUND.SUCCESS notification (RF-4 named no notify_url).
	waitFor(t, "the refund notification", func() bool { return ns.count() == 1 })
	got := ns.received()[0]
	verifyV3Headers(t, got.header, got.body)
	env, res, err := decodeNotice(t, got.body)
	if err != nil {
		t.Fatalf("resource: %v", err)
	}
	rs := env["resource"].(map[string]any)
	if env["event_type"] != EventRefundSuccess || env["resource_type"] != "encrypt-resource" || rs["associated_data"] != "refund" || rs["original_type"] != "refund" {
		t.Errorf("notification %s", got.body)
	}
	if res["out_refund_no"] != "RF-1" || res["refund_status"] != "SUCCESS" || res["refund_id"] != rf["refund_id"] || res["transaction_id"] != paid.TransactionID ||
		res["mchid"] != testMchID || res["user_received_account"] != RefundRecvAccountV3 {
		t.Errorf("refund notice %v", res)
	}
	if a := res["amount"].(map[string]any); a["refund"] != 300.0 || a["total"] != 888.0 || a["payer_refund"] != 300.0 || a["payer_total"] != 888.0 {
		t.Errorf("amount %v", a)
	}
	waitFor(t, "the acknowledgement", func() bool {
		for _, n := range e.sim.Notifications() {
			if n.Kind == KindRefund {
				return n.Acknowledged && n.APIVersion == APIVersion3
			}
		}
		return false
	})
}

func TestV3TradeBill(t *testing.T) {
	e := newV3Env(t, Config{TimeScale: 1000}, modePK)
	c := e.client(t)
	c.prepay("B-0001", "https://example.com/n")
	p := pay(t, e.sim, "B-0001", PayOptions{Lost: true})
	e.clk.Advance(-24 * time.Hour) // a day before: no trade
	e.clk.Advance(24 * time.Hour)

	c.get("/v3/bill/tradebill?bill_date=2024-05-01").wantError(t, http.StatusBadRequest, "STATEMENT_CREATING")
	c.get("/v3/bill/tradebill?bill_date=2024-05-02").wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
	e.clk.Advance(23 * time.Hour) // 2024-05-02 11:00
	tests := []struct {
		name, query string
		status      int
		code        string
	}{
		{"no date", "", 400, "PARAM_ERROR"},
		{"v2 date format", "bill_date=20240501", 400, "INVALID_REQUEST"},
		{"future", "bill_date=2024-05-03", 400, "INVALID_REQUEST"},
		{"no trade", "bill_date=2024-04-30", 400, "NO_STATEMENT_EXIST"},
		{"no refund", "bill_date=2024-05-01&bill_type=REFUND", 400, "NO_STATEMENT_EXIST"},
		{"bad type", "bill_date=2024-05-01&bill_type=RECHARGE", 400, "PARAM_ERROR"},
		{"bad tar_type", "bill_date=2024-05-01&tar_type=ZIP", 400, "PARAM_ERROR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := c.on(t)
			r := c.get("/v3/bill/tradebill?" + tc.query)
			r.wantError(t, tc.status, tc.code)
			verifyV3Headers(t, r.header, r.body)
		})
	}
	for _, tar := range []string{"", "GZIP"} {
		t.Run("download "+tar, func(t *testing.T) {
			c := c.on(t)
			target := "/v3/bill/tradebill?bill_date=2024-05-01&bill_type=ALL"
			if tar != "" {
				target += "&tar_type=" + tar
			}
			r := c.get(target)
			r.wantStatus(t, http.StatusOK)
			verifyV3Headers(t, r.header, r.body)
			m := r.object(t)
			if m["hash_type"] != "SHA1" {
				t.Errorf("answer %s", r.body)
			}
			u := fmt.Sprint(m["download_url"])
			path, ok := strings.CutPrefix(u, e.srv.URL)
			if !ok || !strings.HasPrefix(path, "/v3/billdownload/file?token=") {
				t.Fatalf("download_url %q", u)
			}
			d := c.get(path)
			d.wantStatus(t, http.StatusOK)
			if d.header.Get("Wechatpay-Signature") != "" {
				t.Error("the bill is signed")
			}
			bill := d.body
			if tar == "GZIP" {
				if ct := d.header.Get("Content-Type"); ct != "application/x-gzip" {
					t.Errorf("Content-Type %q", ct)
				}
				bill = gunzip(t, d.body)
			}
			sum := sha1.Sum(bill)
			if hex.EncodeToString(sum[:]) != m["hash_value"] {
				t.Errorf("the bill hashes to %x, hash_value %v", sum, m["hash_value"])
			}
			if !strings.HasPrefix(string(bill), BillHeader+"\r\n") || !strings.Contains(string(bill), "`"+p.TransactionID+",`B-0001,") {
				t.Errorf("bill %q", bill)
			}
			// Authorised like any call: unsigned or another merchant's
			// requests are refused.
			c.do(v3Req{method: http.MethodGet, target: path, key: testV3Keys(t).other}).wantError(t, http.StatusUnauthorized, "SIGN_ERROR")
			c.get(path+"x").wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
		})
	}
	t.Run("another merchant's download", func(t *testing.T) {
		c := c.on(t)
		u := fmt.Sprint(c.get("/v3/bill/tradebill?bill_date=2024-05-01").object(t)["download_url"])
		path := strings.TrimPrefix(u, e.srv.URL)
		other := *c
		other.mchID = "10000300"
		e.sim.AddMerchant(Merchant{MchID: "10000300", Key: testKey, AppIDs: []string{appB}, V3: v3Config(t, modePK, 0)})
		other.get(path).wantError(t, http.StatusForbidden, "NO_AUTH")
		e.clk.Advance(BillDownloadLifetime)
		c.get(path).wantError(t, http.StatusBadRequest, "INVALID_REQUEST")
	})
}

// An APIv3 order's payment is notified in APIv3: signed, its resource
// encrypted; acknowledged by 200 or 204, retried otherwise; a v2 order
// keeps XML.
func TestV3PayNotification(t *testing.T) {
	ns := newV3NotifyServer(t, func(n int, w http.ResponseWriter) {
		switch n {
		case 1:
			http.Error(w, `{"code":"FAIL","message":"busy"}`, http.StatusInternalServerError)
		case 2:
			w.WriteHeader(http.StatusOK)
			fmt.Fprint(w, "whatever")
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	v2ns := newNotifyServer(t, nil)
	e := newV3Env(t, Config{TimeScale: 0.001}, modePK)
	c := e.client(t)
	c.prepay("N-0001", ns.URL())
	p := pay(t, e.sim, "N-0001", PayOptions{})
	waitFor(t, "the retry", func() bool { return ns.count() == 2 })
	for _, got := range ns.received() {
		if ct := got.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if serial := verifyV3Headers(t, got.header, got.body); serial != testPubKeyID {
			t.Errorf("signed by %s", serial)
		}
		if ts, _ := strconv.ParseInt(got.header.Get("Wechatpay-Timestamp"), 10, 64); ts != t0.Unix() {
			t.Errorf("Wechatpay-Timestamp %d, want the simulator's clock %d", ts, t0.Unix())
		}
	}
	recv := ns.received()
	if string(recv[0].body) != string(recv[1].body) {
		t.Error("a retry changed the body")
	}
	if recv[0].header.Get("Wechatpay-Nonce") == recv[1].header.Get("Wechatpay-Nonce") {
		t.Error("a retry reused the nonce: each attempt is signed afresh")
	}
	env, tx, err := decodeNotice(t, recv[0].body)
	if err != nil {
		t.Fatalf("resource: %v", err)
	}
	rs := env["resource"].(map[string]any)
	if env["event_type"] != EventTransactionSuccess || env["resource_type"] != "encrypt-resource" || env["summary"] != "支付成功" ||
		env["create_time"] != "2024-05-01T12:00:00+08:00" || rs["algorithm"] != "AEAD_AES_256_GCM" || rs["associated_data"] != "transaction" ||
		rs["original_type"] != "transaction" || len(fmt.Sprint(rs["nonce"])) != 12 {
		t.Errorf("notification %s", recv[0].body)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(fmt.Sprint(env["id"])) {
		t.Errorf("id %v", env["id"])
	}
	want := map[string]any{
		"appid": appA, "mchid": testMchID, "out_trade_no": "N-0001", "transaction_id": p.TransactionID, "trade_type": "JSAPI",
		"trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "CMC", "attach": "支付测试", "success_time": "2024-05-01T12:00:00+08:00",
		"payer":  map[string]any{"openid": testOpenID},
		"amount": map[string]any{"total": 888.0, "payer_total": 888.0, "currency": "CNY", "payer_currency": "CNY"},
	}
	if fmt.Sprint(tx) != fmt.Sprint(want) {
		t.Errorf("transaction\n got %v\nwant %v", tx, want)
	}
	waitFor(t, "the acknowledgement", func() bool { return e.sim.Notifications()[0].Acknowledged })
	rec := e.sim.Notifications()[0]
	if rec.APIVersion != APIVersion3 || rec.Kind != KindPayment || len(rec.Attempts) != 2 || rec.Attempts[0].Acked || !rec.Attempts[1].Acked ||
		rec.Attempts[1].Serial != testPubKeyID || string(rec.Body) != string(recv[0].body) {
		t.Errorf("record %+v", rec)
	}

	// SendNotification sends the same notification, in v3; a third
	// attempt is acknowledged by 204.
	if err := e.sim.SendNotification(context.Background(), testMchID, "N-0001"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second notification's acknowledgement", func() bool {
		recs := e.sim.Notifications()
		return len(recs) == 2 && recs[1].Acknowledged
	})
	if got := ns.received()[2]; string(got.body) != string(recv[0].body) {
		t.Errorf("SendNotification sent %s", got.body)
	}

	// Duplicate sends two at once; a failed payment sends nothing (v3
	// notifies successes only).
	c.prepay("N-0002", ns.URL())
	c.prepay("N-0003", ns.URL())
	pay(t, e.sim, "N-0002", PayOptions{Duplicate: true})
	pay(t, e.sim, "N-0003", PayOptions{Fail: true})
	waitFor(t, "the duplicates", func() bool { return ns.count() == 5 })
	time.Sleep(20 * time.Millisecond)
	if ns.count() != 5 || len(e.sim.Notifications()) != 4 {
		t.Errorf("%d deliveries, %d records; a failed v3 payment was notified?", ns.count(), len(e.sim.Notifications()))
	}
	if err := e.sim.SendNotification(context.Background(), testMchID, "N-0003"); !errors.Is(err, ErrNotPaid) {
		t.Errorf("SendNotification of a failed v3 payment: %v", err)
	}
	if o, _ := e.sim.Order(testMchID, "N-0003"); o.State != StatePayError {
		t.Errorf("state %s", o.State)
	}

	// A v2 order of the same merchant keeps XML.
	if _, err := e.env.client(wxpay.SignTypeMD5).UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeAPP, "N-V2", v2ns.URL())); err != nil {
		t.Fatal(err)
	}
	pay(t, e.sim, "N-V2", PayOptions{})
	waitFor(t, "the v2 notification", func() bool { return v2ns.count() == 1 })
	if _, err := wxpay.VerifyNotification(v2ns.received()[0].body, testKey); err != nil {
		t.Errorf("v2 notification: %v", err)
	}
	if recs := e.sim.Notifications(); recs[len(recs)-1].APIVersion != APIVersion2 {
		t.Errorf("v2 record %+v", recs[len(recs)-1])
	}
}

// Each fault produces exactly the defect it names.
func TestV3NotificationFaults(t *testing.T) {
	ns := newV3NotifyServer(t, nil)
	e := newV3Env(t, Config{TimeScale: 1000}, modeCert)
	c := e.client(t)
	certSerial := CertificateSerial(testV3Keys(t).plat[0].Certificate)
	for _, f := range V3Faults() {
		t.Run(string(f), func(t *testing.T) {
			c := c.on(t)
			no := "F-" + strings.ReplaceAll(string(f), "_", "-")
			c.prepay(no, ns.URL())
			before := ns.count()
			p := pay(t, e.sim, no, PayOptions{V3Fault: f})
			waitFor(t, "the notification", func() bool { return ns.count() == before+1 })
			got := ns.received()[before]
			h := got.header
			sigErr := checkV3Signature(t, h, got.body)
			ts, _ := strconv.ParseInt(h.Get("Wechatpay-Timestamp"), 10, 64)
			skew := time.Unix(ts, 0).Sub(e.clk.Now())
			_, tx, decErr := decodeNotice(t, got.body)
			sig := h.Get("Wechatpay-Signature")

			want := map[string]bool{ // which checks fail
				"signature": f == V3FaultUnknownSerial || f == V3FaultForgedSignature || f == V3FaultSignTest || f == V3FaultTamperedBody,
				"timestamp": f == V3FaultStaleTimestamp || f == V3FaultFutureTimestamp,
				"serial":    f == V3FaultUnknownSerial,
				"decrypt":   f == V3FaultBrokenTag || f == V3FaultWrongAPIv3Key,
				"signtest":  f == V3FaultSignTest,
			}
			got2 := map[string]bool{
				"signature": sigErr != nil,
				"timestamp": skew > 5*time.Minute || skew < -5*time.Minute,
				"serial":    h.Get("Wechatpay-Serial") != certSerial,
				"decrypt":   decErr != nil,
				"signtest":  strings.HasPrefix(sig, "WECHATPAY/SIGNTEST/"),
			}
			for check, bad := range want {
				if got2[check] != bad {
					t.Errorf("%s check fails: %v, want %v (signature: %v, skew %v, serial %s, decrypt: %v)", check, got2[check], bad, sigErr, skew, h.Get("Wechatpay-Serial"), decErr)
				}
			}
			switch f {
			case V3FaultStaleTimestamp:
				if skew != -V3FaultSkew {
					t.Errorf("skew %v", skew)
				}
			case V3FaultFutureTimestamp:
				if skew != V3FaultSkew {
					t.Errorf("skew %v", skew)
				}
			case V3FaultForgedSignature:
				if raw, err := base64Decode(sig); err != nil || len(raw) != 256 {
					t.Errorf("forged signature %q: %d bytes, %v", sig, len(raw), err)
				}
			case V3FaultUnknownSerial:
				// Valid once the key is known: only the serial is wrong.
				h2 := h.Clone()
				h2.Set("Wechatpay-Serial", certSerial)
				if err := checkV3Signature(t, h2, got.body); err != nil {
					t.Errorf("with the right serial: %v", err)
				}
			}
			if decErr == nil && tx["transaction_id"] != p.TransactionID {
				t.Errorf("transaction %v", tx)
			}
			// SendNotification sends the clean notification.
			if err := e.sim.SendNotification(context.Background(), testMchID, no); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the clean notification", func() bool { return ns.count() == before+2 })
			clean := ns.received()[before+1]
			verifyV3Headers(t, clean.header, clean.body)
			if _, _, err := decodeNotice(t, clean.body); err != nil {
				t.Errorf("the clean notification does not decrypt: %v", err)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		c := c.on(t)
		c.prepay("F-BAD1", ns.URL())
		if _, err := e.env.client(wxpay.SignTypeMD5).UnifiedOrder(context.Background(), newOrder(wxpay.TradeTypeAPP, "F-V2-1", ns.URL())); err != nil {
			t.Fatal(err)
		}
		for name, opts := range map[string]PayOptions{
			"unknown fault": {OutTradeNo: "F-BAD1", V3Fault: "late"},
			"with Lost":     {OutTradeNo: "F-BAD1", V3Fault: V3FaultSignTest, Lost: true},
			"with Fail":     {OutTradeNo: "F-BAD1", V3Fault: V3FaultSignTest, Fail: true},
			"a v2 order":    {OutTradeNo: "F-V2-1", V3Fault: V3FaultSignTest},
		} {
			opts.MchID = testMchID
			if _, err := e.sim.Pay(context.Background(), opts); !errors.Is(err, ErrInvalidPayOptions) {
				t.Errorf("%s: %v, want ErrInvalidPayOptions", name, err)
			}
		}
	})
	t.Run("control route", func(t *testing.T) {
		c := c.on(t)
		c.prepay("F-ROUTE", ns.URL())
		before := ns.count()
		status, body := e.post(t, "/sim/pay", "application/json", []byte(`{"mch_id":"10000100","out_trade_no":"F-ROUTE","v3_fault":"signtest"}`))
		if status != http.StatusOK {
			t.Fatalf("/sim/pay: %d %s", status, body)
		}
		waitFor(t, "the notification", func() bool { return ns.count() == before+1 })
		if sig := ns.received()[before].header.Get("Wechatpay-Signature"); !strings.HasPrefix(sig, SignTestPrefix) {
			t.Errorf("signature %q", sig)
		}
		status, body = e.post(t, "/sim/pay", "application/json", []byte(`{"mch_id":"10000100","out_trade_no":"F-ROUTE","v3_fault":"nope"}`))
		if status != http.StatusBadRequest && status != http.StatusConflict {
			t.Errorf("/sim/pay with an unknown fault: %d %s", status, body)
		}
	})
}

func base64Decode(s string) ([]byte, error) {
	var out []byte
	err := json.Unmarshal([]byte(`"`+s+`"`), &out)
	return out, err
}

// During the migration notifications are signed with either key, at
// random with PublicKeyShare, unless forced.
func TestV3MigrationSigners(t *testing.T) {
	ns := newV3NotifyServer(t, nil)
	e := newV3Env(t, Config{TimeScale: 1000, Logf: func(string, ...any) {}}, modeBoth)
	c := e.client(t)
	certSerial := CertificateSerial(testV3Keys(t).plat[0].Certificate)
	c.prepay("M-0001", ns.URL())
	pay(t, e.sim, "M-0001", PayOptions{})
	waitFor(t, "the payment's notification", func() bool { return ns.count() == 1 })
	send := func(n int) map[string]int {
		t.Helper()
		before := ns.count()
		for range n {
			if err := e.sim.SendNotification(context.Background(), testMchID, "M-0001"); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the notifications", func() bool { return ns.count() == before+n })
		kinds := map[string]int{}
		for _, got := range ns.received()[before:] {
			kinds[verifyV3Headers(t, got.header, got.body)]++
		}
		return kinds
	}
	// PublicKeyShare 0.5: both kinds over 40 notifications (all the
	// same: probability 2^-39).
	if kinds := send(40); kinds[testPubKeyID] == 0 || kinds[certSerial] == 0 || len(kinds) != 2 {
		t.Errorf("signers %v, want both", kinds)
	}
	for _, signer := range []string{SignerPublicKey, SignerCertificate} {
		if err := e.sim.SetV3NotificationSigner(testMchID, signer); err != nil {
			t.Fatal(err)
		}
		want := testPubKeyID
		if signer == SignerCertificate {
			want = certSerial
		}
		if kinds := send(10); kinds[want] != 10 {
			t.Errorf("forced %s: signers %v", signer, kinds)
		}
	}
	if err := e.sim.SetV3NotificationSigner(testMchID, "both"); !errors.Is(err, ErrInvalidV3) {
		t.Errorf("unknown signer: %v", err)
	}
	// Through the control route.
	status, body := e.post(t, "/sim/v3/notification-signer", "application/json", []byte(`{"mch_id":"10000100","signer":"public_key"}`))
	if status != http.StatusNoContent {
		t.Fatalf("/sim/v3/notification-signer: %d %s", status, body)
	}
	if kinds := send(5); kinds[testPubKeyID] != 5 {
		t.Errorf("signers %v", kinds)
	}
	// Leaving the migration: public key mode signs with the public key
	// whatever was forced.
	if err := e.sim.SetV3Signing(testMchID, true, false); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetV3NotificationSigner(testMchID, SignerCertificate); err != nil {
		t.Fatal(err)
	}
	if kinds := send(5); kinds[testPubKeyID] != 5 {
		t.Errorf("public key mode: signers %v", kinds)
	}
	c.get("/v3/certificates").wantError(t, http.StatusNotFound, "RESOURCE_NOT_EXISTS")
}

func TestV3Rotation(t *testing.T) {
	k := testV3Keys(t)
	e := newV3Env(t, Config{}, modeCert)
	c := e.client(t)
	serials := func() []string {
		t.Helper()
		r := c.get("/v3/certificates")
		r.wantStatus(t, http.StatusOK)
		var list struct {
			Data []struct {
				SerialNo string `json:"serial_no"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range list.Data {
			out = append(out, d.SerialNo)
		}
		return out
	}
	answerSigner := func() string {
		r := c.get("/v3/pay/transactions/out-trade-no/ROT-NOPE?mchid=" + testMchID)
		return verifyV3Headers(t, r.header, r.body)
	}
	a, b := CertificateSerial(k.plat[0].Certificate), CertificateSerial(k.plat[1].Certificate)
	if s := answerSigner(); s != a {
		t.Fatalf("signed by %s, want %s", s, a)
	}
	// An expired certificate added later does not sign.
	if err := e.sim.RotatePlatformCertificate(testMchID, k.expired); err != nil {
		t.Fatal(err)
	}
	if s := answerSigner(); s != a {
		t.Errorf("after adding an expired certificate, signed by %s", s)
	}
	if err := e.sim.RetirePlatformCertificate(testMchID, CertificateSerial(k.expired.Certificate)); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.RotatePlatformCertificate(testMchID, k.plat[1]); err != nil {
		t.Fatal(err)
	}
	if s := answerSigner(); s != b {
		t.Errorf("after rotation, signed by %s, want %s", s, b)
	}
	if got := serials(); fmt.Sprint(got) != fmt.Sprint([]string{a, b}) {
		t.Errorf("listed %v, want both", got)
	}
	if err := e.sim.RotatePlatformCertificate(testMchID, k.plat[1]); !errors.Is(err, ErrInvalidV3) {
		t.Errorf("rotating the same certificate again: %v", err)
	}
	if err := e.sim.RetirePlatformCertificate(testMchID, a); err != nil {
		t.Fatal(err)
	}
	if got := serials(); fmt.Sprint(got) != fmt.Sprint([]string{b}) {
		t.Errorf("listed %v after retiring %s", got, a)
	}
	if err := e.sim.RetirePlatformCertificate(testMchID, b); !errors.Is(err, ErrInvalidV3) {
		t.Errorf("retiring the only key: %v", err)
	}
	if err := e.sim.SetV3Signing(testMchID, true, false); !errors.Is(err, ErrInvalidV3) {
		t.Errorf("public key mode without a public key: %v", err)
	}

	t.Run("control routes", func(t *testing.T) {
		c := c.on(t)
		status, body := e.post(t, "/sim/v3/rotate", "application/json", []byte(`{"mch_id":"10000100"}`))
		if status != http.StatusOK {
			t.Fatalf("/sim/v3/rotate: %d %s", status, body)
		}
		var rot map[string]string
		if err := json.Unmarshal(body, &rot); err != nil {
			t.Fatal(err)
		}
		c2 := serials()
		if len(c2) != 2 || c2[1] != rot["serial_no"] {
			t.Fatalf("listed %v, want %s added", c2, rot["serial_no"])
		}
		r := c.get("/v3/certificates")
		if s := r.header.Get("Wechatpay-Serial"); s != rot["serial_no"] {
			t.Errorf("the generated certificate does not sign: %s", s)
		}
		status, body = e.post(t, "/sim/v3/retire", "application/json", []byte(`{"mch_id":"10000100","serial_no":"`+rot["serial_no"]+`"}`))
		if status != http.StatusNoContent {
			t.Fatalf("/sim/v3/retire: %d %s", status, body)
		}
		pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.plat[2].Certificate.Raw})
		pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509MarshalPKCS1(k.plat[2])})
		req, _ := json.Marshal(map[string]string{"mch_id": testMchID, "certificate_pem": string(pemCert), "private_key_pem": string(pemKey)})
		status, body = e.post(t, "/sim/v3/rotate", "application/json", req)
		if status != http.StatusOK || !strings.Contains(string(body), CertificateSerial(k.plat[2].Certificate)) {
			t.Fatalf("/sim/v3/rotate with PEM: %d %s", status, body)
		}
		for _, tc := range []struct {
			path, body string
			status     int
		}{
			{"/sim/v3/rotate", `{"mch_id":"10000100","certificate_pem":"x","private_key_pem":"y"}`, http.StatusBadRequest},
			{"/sim/v3/rotate", `{"mch_id":"nope"}`, http.StatusNotFound},
			{"/sim/v3/retire", `{"mch_id":"10000100","serial_no":"00"}`, http.StatusBadRequest},
			{"/sim/v3/signing", `{"mch_id":"10000200","public_key":true}`, http.StatusConflict},
			{"/sim/v3/signing", `{"mch_id":"10000100","certificates":true}`, http.StatusNoContent},
			{"/sim/v3/signing", `{"mch_id":"10000100","certificates":true,"extra":1}`, http.StatusBadRequest},
		} {
			if status, body := e.post(t, tc.path, "application/json", []byte(tc.body)); status != tc.status {
				t.Errorf("POST %s %s: %d %s, want %d", tc.path, tc.body, status, body, tc.status)
			}
		}
		r2, body := e.get(t, "/sim/v3/certificate-downloads?mch_id=10000100")
		var dl map[string]any
		if err := json.Unmarshal(body, &dl); err != nil || r2.StatusCode != http.StatusOK || dl["downloads"] != float64(e.sim.CertificateDownloads(testMchID)) || dl["downloads"] == 0.0 {
			t.Errorf("/sim/v3/certificate-downloads: %d %s", r2.StatusCode, body)
		}
		if r3, _ := e.get(t, "/sim/v3/rotate"); r3.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /sim/v3/rotate: %d", r3.StatusCode)
		}
	})

	t.Run("replacing the merchant keeps the download count", func(t *testing.T) {
		c := c.on(t)
		n := e.sim.CertificateDownloads(testMchID)
		e.sim.AddMerchant(Merchant{MchID: testMchID, Key: testKey, AppIDs: []string{appA}, V3: v3Config(t, modePK, 0)})
		if got := e.sim.CertificateDownloads(testMchID); got != n {
			t.Errorf("%d downloads after replacement, want %d", got, n)
		}
		c.get("/v3/certificates").wantError(t, http.StatusNotFound, "RESOURCE_NOT_EXISTS")
		// Public key mode rotating in a certificate enters the migration.
		if err := e.sim.RotatePlatformCertificate(testMchID, k.plat[0]); err != nil {
			t.Fatal(err)
		}
		c.get("/v3/certificates").wantStatus(t, http.StatusOK)
		if err := e.sim.RetirePlatformCertificate(testMchID, a); err != nil {
			t.Fatal(err)
		}
		c.get("/v3/certificates").wantError(t, http.StatusNotFound, "RESOURCE_NOT_EXISTS")
	})
}

func TestV3FaultsAndDelays(t *testing.T) {
	e := newV3Env(t, Config{}, modePK)
	c := e.client(t)
	e.sim.FailNext(APIV3Query, 1, "")
	e.sim.FailNext(APIV3Query, 1, "FREQUENCY_LIMITED")
	target := "/v3/pay/transactions/out-trade-no/FD-NOPE?mchid=" + testMchID
	r := c.get(target)
	r.wantError(t, http.StatusInternalServerError, "SYSTEM_ERROR")
	verifyV3Headers(t, r.header, r.body)
	c.get(target).wantError(t, http.StatusTooManyRequests, "FREQUENCY_LIMITED")
	c.get(target).wantError(t, http.StatusNotFound, "ORDER_NOT_EXIST")
	// An unauthenticated call does not consume the fault.
	e.sim.FailNext(APIV3Query, 1, "")
	c.do(v3Req{method: http.MethodGet, target: target, key: testV3Keys(t).other}).wantError(t, http.StatusUnauthorized, "SIGN_ERROR")
	c.get(target).wantError(t, http.StatusInternalServerError, "SYSTEM_ERROR")

	// A delayed prepay places the order before the caller gives up.
	e.sim.DelayNext(APIV3Prepay, 1, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b := mustJSON(t, jsapiBody("FD-DELAY", "https://example.com/n"))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v3/pay/transactions/jsapi", strings.NewReader(string(b)))
	req.Header.Set("Authorization", c.sign(http.MethodPost, "/v3/pay/transactions/jsapi", b, strconv.FormatInt(t0.Unix(), 10), "abc", testV3Keys(t).mchKey, testMchID, c.serial))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the delayed answer came")
	}
	if _, ok := e.sim.Order(testMchID, "FD-DELAY"); !ok {
		t.Error("the delayed prepay placed no order")
	}
}

// Close stops v3 notification retries and refund settlements: no
// goroutine of the simulator's is left.
func TestV3CloseStopsGoroutines(t *testing.T) {
	ns := newV3NotifyServer(t, func(n int, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	e := newV3Env(t, Config{TimeScale: 1}, modeBoth) // the first retry would come after 15s, refunds after 5s
	c := e.client(t)
	c.prepay("CL-001", ns.URL())
	p := pay(t, e.sim, "CL-001", PayOptions{Duplicate: true})
	c.post("/v3/refund/domestic/refunds", map[string]any{
		"transaction_id": p.TransactionID, "out_refund_no": "CL-RF1", "notify_url": ns.URL(),
		"amount": map[string]any{"refund": 1, "total": 888, "currency": "CNY"},
	}).wantStatus(t, http.StatusOK)
	waitFor(t, "the first attempts", func() bool { return ns.count() == 2 })
	if n := simGoroutines(); n != 2 {
		t.Errorf("%d delivery goroutines before Close, want 2", n)
	}
	start := time.Now()
	e.sim.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	waitFor(t, "no goroutine of the simulator", func() bool { return simGoroutines() == 0 && settleGoroutines() == 0 })
	if rf := e.sim.Refunds()[0]; rf.Status != RefundStatusProcessing {
		t.Errorf("refund %s after Close", rf.Status)
	}
	if _, err := e.sim.Pay(context.Background(), PayOptions{MchID: testMchID, OutTradeNo: "CL-001"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Pay after Close: %v", err)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

func x509MarshalPKCS1(pc PlatformCertificate) []byte { return x509.MarshalPKCS1PrivateKey(pc.Key) }

// settleGoroutines counts the goroutines settling refunds.
func settleGoroutines() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "wxpaysim.(*Simulator).settleRefund")
}
