package wxpay

import (
	"crypto/aes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The req_info vector was made outside this code with OpenSSL (and checked
// with python3's cryptography module, which printed the same base64). The
// AES-256 key is the 32 ASCII characters of the lowercase hex MD5 of the
// API key 192006250b4c09247ec02edce69f6a2d, which md5sum prints as
// d96eb16afdd491fa1e705096edbc2205:
//
//	K=$(printf '%s' 192006250b4c09247ec02edce69f6a2d | md5sum | cut -c1-32)
//	printf '%s' "$reqInfoPlain" | openssl enc -aes-256-ecb -K $(printf '%s' "$K" | od -An -tx1 | tr -d ' \n') -nosalt | base64 -w0
//
// where $reqInfoPlain is the constant below (775 bytes, so 9 bytes of
// PKCS#7 padding), and -K is
// 6439366562313661666464343931666131653730353039366564626332323035.
const (
	reqInfoMD5Hex = "d96eb16afdd491fa1e705096edbc2205"
	reqInfoPlain  = `<root><out_refund_no><![CDATA[R20150806125346]]></out_refund_no><out_trade_no><![CDATA[20150806125346]]></out_trade_no><refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account><refund_fee><![CDATA[88]]></refund_fee><refund_id><![CDATA[50000408942018111907145868882]]></refund_id><refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout><refund_request_source><![CDATA[API]]></refund_request_source><refund_status><![CDATA[SUCCESS]]></refund_status><settlement_refund_fee><![CDATA[88]]></settlement_refund_fee><settlement_total_fee><![CDATA[88]]></settlement_total_fee><success_time><![CDATA[2018-11-19 16:24:13]]></success_time><total_fee><![CDATA[88]]></total_fee><transaction_id><![CDATA[4200000215201811190261405420]]></transaction_id></root>`
	reqInfoB64    = `WBzGpzQuNpcFxIlFjUUD9BfnwwNUlVAs7bwvgHME4/QUoXF0wlxjVGJICCenJ1RgjUF6J1J4xU4Xuo3b+lNaAs27gGtso/DIzNj/bM43hg18Wi5bMiy+uhqdX+c4CXwIjfZ61ygFYAYY1k3eusXULiBA1vEx1jLIS4Ju/D/Dl0fs1MiONanwz8W2WHrukEBu5WfwhaaImwE809F3XdacGXjlIBqvQs6jID5y43KsMOIuNryzItyKhyZylt1EXMvzob6i0XybelLc7hu2oGCNBntYXjK7WJR+4v3NFdnRmA5h85MhuzZghXmvBPHbdqunY2KhhPx/UbiTMQlgsiNETGAdVCmcvRCIHaMrCeS1AyGcJ/T7gFRR8N5IYFWF8rcFecVjufP59/MGIk9IbFXoqyMTLYFTJpcVP+tsocDlx/7PMaFRsEcEWkvDGdgP9f/4zXzYABzuJYs/XvUEnAGqPNrHKE0zqTnzgnJfjm41lYbdquRBjesjyMG7XvOCjYGwVFpQkOdEcAZf8fHcLFAHBU/SIgimtAhNd8SXLbAb3DjXfOiWwEK2UzTnfyVO5fYctUgQOQZ3PdUpCHe52D/Ag/y6+oagCs2Bf+Vn/fu+b9ICYdgqYKlhHSz92Ru1Uy5JG2NF/wShb2l4JS+IKj39fqGFFc0aJ6xMMJL06e6dm5zi/Z2LHZHMTRWYSDSeyKYlunF/xPT30sTBVxegn3XhEqQiq/1XBGbIOe7bVimN+GhCcw2ZPAUMQ9XxsZR1w7RuLqHaJOrjodGiv6OL+GX9hpZklKUMCjnQQOdP8HDO3n7eG5AVkHh3bbhEvl2UvcCEdI8CAORvpiSQ97UVvyaQl3iFYFvOF0rcmp4mnpCnaP1IyxNDsH3iu2bjyt57DJoibeWyNT+AB7eP9SbVSvEql56ppvW3xRgtVJDHZu3dL1g3OGT9Df9azirmDVbVUlsfhmfOGXvNaMEaA+PeOoyMBXJ0icLetVxE7qTPUsKNGfQoj3U6mstwVYsgk4kFTfm62aE11oitOwkP3LMSrYnx1A==`
)

// reqInfoFields are the fields of reqInfoPlain, in document order.
func reqInfoFields() Params {
	return Params{
		{"out_refund_no", "R20150806125346"},
		{"out_trade_no", "20150806125346"},
		{"refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"},
		{"refund_fee", "88"},
		{"refund_id", "50000408942018111907145868882"},
		{"refund_recv_accout", "支付用户零钱"},
		{"refund_request_source", "API"},
		{"refund_status", "SUCCESS"},
		{"settlement_refund_fee", "88"},
		{"settlement_total_fee", "88"},
		{"success_time", "2018-11-19 16:24:13"},
		{"total_fee", "88"},
		{"transaction_id", "4200000215201811190261405420"},
	}
}

// refundNotifyDoc is the outer document of a refund notification, written
// the way WeChat does without going through EncodeXML.
func refundNotifyDoc(returnCode, reqInfo string) []byte {
	p := Params{
		{"return_code", returnCode},
		{"appid", "wx2421b1c4370ec43b"},
		{"mch_id", "10000100"},
		{"nonce_str", "TeqClE3i0mvn3DrK"},
	}
	if reqInfo != "" {
		p = append(p, Param{"req_info", reqInfo})
	}
	return xmlDoc("xml", p)
}

func TestRefundInfoKey(t *testing.T) {
	if got := string(reqInfoKey(officialKey)); got != reqInfoMD5Hex {
		t.Fatalf("reqInfoKey = %s, want %s (md5sum)", got, reqInfoMD5Hex)
	}
}

func TestDecryptRefundNotificationVector(t *testing.T) {
	n, err := DecryptRefundNotification(refundNotifyDoc("SUCCESS", reqInfoB64), officialKey)
	if err != nil {
		t.Fatalf("DecryptRefundNotification: %v", err)
	}
	if !reflect.DeepEqual(n.Info, reqInfoFields()) {
		t.Errorf("Info =\n%q\nwant\n%q", n.Info, reqInfoFields())
	}
	total, terr := n.TotalFee()
	refund, rerr := n.RefundFee()
	got := []any{n.MchID(), n.AppID(), n.OutRefundNo(), n.RefundID(), n.TransactionID(), n.OutTradeNo(), n.RefundStatus(), n.Succeeded(), total, terr, refund, rerr, n.SuccessTime(), n.Get("refund_recv_accout")}
	want := []any{"10000100", "wx2421b1c4370ec43b", "R20150806125346", "50000408942018111907145868882", "4200000215201811190261405420", "20150806125346", "SUCCESS", true, int64(88), nil, int64(88), nil, "2018-11-19 16:24:13", "支付用户零钱"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("accessors =\n%v\nwant\n%v", got, want)
	}
	if n.Params.Get("req_info") != reqInfoB64 || n.Params.Get("return_code") != "SUCCESS" {
		t.Errorf("Params %v", n.Params)
	}

	// EncryptRefundInfo writes what OpenSSL wrote: the plaintext is
	// EncodeXML's own shape, and ECB has no IV.
	enc, err := EncryptRefundInfo(reqInfoFields(), officialKey)
	if err != nil {
		t.Fatalf("EncryptRefundInfo: %v", err)
	}
	if enc != reqInfoB64 {
		t.Errorf("EncryptRefundInfo =\n%s\nwant (openssl)\n%s", enc, reqInfoB64)
	}
	if plain, _ := AppendXML(nil, "root", reqInfoFields()); string(plain) != reqInfoPlain {
		t.Errorf("the vector's plaintext is not AppendXML's shape:\n%s", plain)
	}
}

func TestRefundInfoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		info Params
	}{
		{"vector", reqInfoFields()},
		// <root><total_fee><![CDATA[1]]></total_fee> … is cut to a whole
		// number of blocks so that the padding is a full block of 16s.
		{"whole blocks", nil},
		{"refund closed", Params{
			{"out_refund_no", "R1"}, {"refund_id", "1"}, {"out_trade_no", "T1"},
			{"refund_status", "REFUNDCLOSE"}, {"refund_fee", "1"}, {"total_fee", "1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := tt.info
			if info == nil {
				info = Params{{"out_refund_no", "R1"}, {"refund_id", "1"}, {"out_trade_no", "T1"}, {"refund_status", "SUCCESS"}, {"refund_fee", "1"}, {"total_fee", "1"}, {"x", ""}}
				plain, _ := AppendXML(nil, "root", info)
				info[len(info)-1].Value = strings.Repeat("x", 16-len(plain)%16)
				if plain, _ = AppendXML(nil, "root", info); len(plain)%16 != 0 {
					t.Fatalf("plaintext of %d bytes", len(plain))
				}
			}
			enc, err := EncryptRefundInfo(info, officialKey)
			if err != nil {
				t.Fatal(err)
			}
			n, err := DecryptRefundNotification(refundNotifyDoc("SUCCESS", enc), officialKey)
			if err != nil {
				t.Fatalf("DecryptRefundNotification: %v", err)
			}
			if !reflect.DeepEqual(n.Info, info) {
				t.Errorf("Info =\n%q\nwant\n%q", n.Info, info)
			}
		})
	}
}

func TestDecryptRefundNotificationRefuses(t *testing.T) {
	ct, err := base64.StdEncoding.DecodeString(reqInfoB64)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	flip := func(i int) string {
		c := append([]byte(nil), ct...)
		c[i] ^= 0x01
		return b64(c)
	}
	encrypt := func(info Params) string {
		s, err := EncryptRefundInfo(info, officialKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	without := func(name string) Params { p := reqInfoFields(); p.Delete(name); return p }
	with := func(name, value string) Params { p := reqInfoFields(); p.Set(name, value); return p }

	tests := []struct {
		name    string
		body    []byte
		key     APIKey
		is      error  // errors.Is target, or nil
		field   string // the *FieldError's field, or ""
		message string // in the error
	}{
		{"wrong key", refundNotifyDoc("SUCCESS", reqInfoB64), "192006250b4c09247ec02edce69f6a2e", ErrReqInfoDecrypt, "", "padding"},
		{"raw API key instead of its MD5", nil, "", ErrReqInfoDecrypt, "", "padding"},
		{"tampered last block", refundNotifyDoc("SUCCESS", flip(len(ct)-1)), officialKey, ErrReqInfoDecrypt, "", "padding"},
		{"tampered middle block", refundNotifyDoc("SUCCESS", flip(len(ct)/2)), officialKey, ErrReqInfoDecrypt, "", "tampered"},
		{"truncated by 3 bytes", refundNotifyDoc("SUCCESS", b64(ct[:len(ct)-3])), officialKey, ErrReqInfoDecrypt, "", "truncated"},
		{"truncated by a block", refundNotifyDoc("SUCCESS", b64(ct[:len(ct)-16])), officialKey, ErrReqInfoDecrypt, "", "padding"},
		{"empty req_info", refundNotifyDoc("SUCCESS", b64(ct[:0])), officialKey, nil, "req_info", "missing"},
		{"not base64", refundNotifyDoc("SUCCESS", "这不是base64!"), officialKey, nil, "", "not base64"},
		{"URL-safe base64", refundNotifyDoc("SUCCESS", strings.NewReplacer("+", "-", "/", "_").Replace(reqInfoB64)), officialKey, nil, "", "not base64"},
		{"return_code FAIL", refundNotifyDoc("FAIL", reqInfoB64), officialKey, nil, "", `return_code is "FAIL"`},
		{"no req_info", refundNotifyDoc("SUCCESS", ""), officialKey, nil, "req_info", "missing"},
		{"not XML", []byte(`{"req_info":"` + reqInfoB64 + `"}`), officialKey, nil, "", "expected an element"},
		{"empty key", refundNotifyDoc("SUCCESS", reqInfoB64), "", nil, "", "api key is empty"},
		{"plaintext not <root>", refundNotifyDoc("SUCCESS", encryptRaw(t, pkcs7([]byte("<xml><a>1</a></xml>")))), officialKey, ErrReqInfoDecrypt, "", "<root>"},
		{"padding 0", refundNotifyDoc("SUCCESS", encryptRaw(t, []byte("<root></root>\x00\x00\x00"))), officialKey, ErrReqInfoDecrypt, "", "padding"},
		{"padding 17", refundNotifyDoc("SUCCESS", encryptRaw(t, []byte("<root></root>\x11\x11\x11"))), officialKey, ErrReqInfoDecrypt, "", "padding"},
		{"padding inconsistent", refundNotifyDoc("SUCCESS", encryptRaw(t, []byte("<root></root>\x02\x03\x03"))), officialKey, ErrReqInfoDecrypt, "", "padding"},
		{"no out_refund_no", refundNotifyDoc("SUCCESS", encrypt(without("out_refund_no"))), officialKey, nil, "out_refund_no", "missing"},
		{"no refund_id", refundNotifyDoc("SUCCESS", encrypt(without("refund_id"))), officialKey, nil, "refund_id", "missing"},
		{"no out_trade_no", refundNotifyDoc("SUCCESS", encrypt(without("out_trade_no"))), officialKey, nil, "out_trade_no", "missing"},
		{"no refund_status", refundNotifyDoc("SUCCESS", encrypt(without("refund_status"))), officialKey, nil, "refund_status", "missing"},
		{"no refund_fee", refundNotifyDoc("SUCCESS", encrypt(without("refund_fee"))), officialKey, nil, "refund_fee", "missing"},
		{"no total_fee", refundNotifyDoc("SUCCESS", encrypt(without("total_fee"))), officialKey, nil, "total_fee", "missing"},
		{"refund_fee in yuan", refundNotifyDoc("SUCCESS", encrypt(with("refund_fee", "0.88"))), officialKey, nil, "refund_fee", "not an amount"},
		{"refund_fee leading zero", refundNotifyDoc("SUCCESS", encrypt(with("refund_fee", "088"))), officialKey, nil, "refund_fee", "not an amount"},
		{"settlement_refund_fee negative", refundNotifyDoc("SUCCESS", encrypt(with("settlement_refund_fee", "-88"))), officialKey, nil, "settlement_refund_fee", "not an amount"},
		{"refund_fee above total_fee", refundNotifyDoc("SUCCESS", encrypt(with("refund_fee", "89"))), officialKey, nil, "refund_fee", "more than total_fee"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, key := tt.body, tt.key
			if tt.name == "raw API key instead of its MD5" {
				// Encrypted under the API key itself, the mistake of
				// integrations that skip the MD5.
				body = refundNotifyDoc("SUCCESS", encryptWithRawKey(t, []byte(reqInfoPlain)))
				key = officialKey
			}
			n, err := DecryptRefundNotification(body, key)
			if err == nil {
				t.Fatalf("DecryptRefundNotification succeeded: %v", n.Info)
			}
			if n != nil {
				t.Errorf("a notification came with the error %v", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want one wrapping %v", err, tt.is)
			}
			if tt.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Errorf("err = %v, want a *FieldError for %s", err, tt.field)
				}
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.message) || !strings.HasPrefix(msg, "wxpay: ") {
				t.Errorf("err = %q, want one about %q", msg, tt.message)
			}
			for _, secret := range []string{string(officialKey), reqInfoMD5Hex, "192006250b4c09247ec02edce69f6a2e", "R20150806125346", "支付用户零钱"} {
				if strings.Contains(msg, secret) {
					t.Errorf("the error carries %q: %v", secret, err)
				}
			}
		})
	}
}

// encryptRaw encrypts plain, already padded, under the MD5 key, to build
// plaintexts EncryptRefundInfo would not.
func encryptRaw(t *testing.T, plain []byte) string {
	t.Helper()
	return ecbEncrypt(t, reqInfoKey(officialKey), plain)
}

// encryptWithRawKey pads and encrypts plain under the API key itself.
func encryptWithRawKey(t *testing.T, plain []byte) string {
	t.Helper()
	return ecbEncrypt(t, []byte(officialKey), pkcs7(plain))
}

// pkcs7 pads plain to whole AES blocks.
func pkcs7(plain []byte) []byte {
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	return append(append([]byte(nil), plain...), strings.Repeat(string(rune(pad)), pad)...)
}

// ecbEncrypt is AES-ECB written here with crypto/aes alone, independently
// of refundnotify.go.
func ecbEncrypt(t *testing.T, key, plain []byte) string {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain)%aes.BlockSize != 0 {
		t.Fatalf("plaintext of %d bytes", len(plain))
	}
	out := make([]byte, len(plain))
	for i := 0; i < len(plain); i += aes.BlockSize {
		b.Encrypt(out[i:], plain[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(out)
}

func FuzzDecryptRefundNotification(f *testing.F) {
	f.Add([]byte(reqInfoB64))
	f.Add([]byte(""))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAA=="))
	f.Fuzz(func(t *testing.T, reqInfo []byte) {
		// Any req_info, even valid base64 of any length, decrypts or
		// fails cleanly; never a panic.
		doc := refundNotifyDoc("SUCCESS", base64.StdEncoding.EncodeToString(reqInfo))
		if n, err := DecryptRefundNotification(doc, officialKey); err == nil && n.OutRefundNo() == "" {
			t.Fatal("a notification without out_refund_no was accepted")
		}
		DecryptRefundNotification(refundNotifyDoc("SUCCESS", string(reqInfo)), officialKey)
	})
}
