package wxpay

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// How the notification vectors below were made. Each table row carries the
// canonical string of WeChat's 签名算法 (non-empty fields except sign, sorted
// by name in byte order, k=v joined with &, then &key=<key>) and the MD5 and
// HMAC-SHA256 of that string as printed by
//
//	python3 -c 'import hashlib,hmac,sys; s=sys.argv[1].encode(); print(hashlib.md5(s).hexdigest().upper(), hmac.new(b"192006250b4c09247ec02edce69f6a2d", s, hashlib.sha256).hexdigest().upper())' "<canonical string>"
//
// (The same command prints WeChat's official vectors 9A0A8659… and
// 6A9AE165… for the 安全规范 example, see sign_test.go.) Each test also checks
// that refCanonical, written here independently of sign.go, builds exactly
// the canonical string in the row from the row's fields, so a fixture and
// its comment cannot drift apart.

// refCanonical builds the canonical string independently of sign.go.
func refCanonical(p Params, key APIKey) string {
	seen := map[string]bool{}
	var kv []string
	for _, f := range p {
		if seen[f.Name] {
			panic("refCanonical: duplicate field " + f.Name)
		}
		seen[f.Name] = true
		if f.Name == "sign" || f.Value == "" {
			continue
		}
		kv = append(kv, f.Name+"="+f.Value)
	}
	// Sorting "k=v" strings would misorder a name that is a prefix of
	// another ("a=…" vs "a_b=…"), so sort by name.
	sort.Slice(kv, func(i, j int) bool {
		return kv[i][:strings.IndexByte(kv[i], '=')] < kv[j][:strings.IndexByte(kv[j], '=')]
	})
	return strings.Join(append(kv, "key="+string(key)), "&")
}

// refSign signs with crypto/md5 and crypto/hmac directly, independently of
// sign.go's hand-rolled HMAC.
func refSign(p Params, key APIKey, st SignType) string {
	s := []byte(refCanonical(p, key))
	var sum []byte
	switch st {
	case SignTypeMD5:
		d := md5.Sum(s)
		sum = d[:]
	case SignTypeHMACSHA256:
		m := hmac.New(sha256.New, []byte(key))
		m.Write(s)
		sum = m.Sum(nil)
	default:
		panic("refSign: sign type " + string(st))
	}
	return strings.ToUpper(hex.EncodeToString(sum))
}

// xmlDoc writes a flat document the way WeChat does, every value in CDATA,
// without going through EncodeXML.
func xmlDoc(root string, p Params) []byte {
	var b strings.Builder
	b.WriteString("<" + root + ">")
	for _, f := range p {
		fmt.Fprintf(&b, "<%s><![CDATA[%s]]></%s>", f.Name, f.Value, f.Name)
	}
	b.WriteString("</" + root + ">")
	return []byte(b.String())
}

// exampleFields are the fields of notifyExample without its sign, in
// document order. (Its sign B552ED6B… was made with a key WeChat does not
// publish, so the tests re-sign it with officialKey.)
func exampleFields() Params {
	return Params{
		{"appid", "wx2421b1c4370ec43b"},
		{"attach", "支付测试"},
		{"bank_type", "CFT"},
		{"fee_type", "CNY"},
		{"is_subscribe", "Y"},
		{"mch_id", "10000100"},
		{"nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"},
		{"openid", "oUpF8uMEb4qRXf22hE3X68TekukE"},
		{"out_trade_no", "1409811653"},
		{"result_code", "SUCCESS"},
		{"return_code", "SUCCESS"},
		{"time_end", "20140903131540"},
		{"total_fee", "1"},
		{"coupon_fee", "10"},
		{"coupon_count", "1"},
		{"coupon_type", "CASH"},
		{"coupon_id", "10000"},
		{"trade_type", "JSAPI"},
		{"transaction_id", "1004400740201409030005092168"},
	}
}

// exampleWith returns exampleFields with fields set (replaced in place or
// appended) and others dropped.
func exampleWith(set Params, drop ...string) Params {
	p := exampleFields()
	for _, d := range drop {
		p.Delete(d)
	}
	for _, f := range set {
		p.Set(f.Name, f.Value)
	}
	return p
}

// signedDoc is fields plus their sign, as a <xml> document.
func signedDoc(fields Params, sign string) []byte {
	return xmlDoc("xml", append(fields.Clone(), Param{"sign", sign}))
}

// exampleCanonical is the canonical string of exampleFields.
const exampleCanonical = "appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d"

const (
	// MD5 of exampleCanonical (python command above).
	exampleSignMD5 = "F3F481B732273AFA2839E877583F311D"
	// HMAC-SHA256 of exampleCanonical: the sign of the notification of an
	// order placed with HMAC-SHA256, which WeChat sends without sign_type
	// (the sign's 64 digits say HMAC-SHA256).
	exampleSignHMACNoType = "DB7FDDA72B74F16EBD936876F870DEA7E28141AD5AE8D45312B011AD61ACC342"
)

// exampleSignedMD5 is WeChat's example notification, byte for byte as the
// docs print it (indentation, a total_fee outside CDATA), re-signed with
// officialKey.
func exampleSignedMD5() []byte {
	return []byte(strings.Replace(notifyExample, "B552ED6B279343CB493C5DD0D78AB241", exampleSignMD5, 1))
}

// Vectors of the notifications that verify.
var (
	hmacFields = exampleWith(Params{{"sign_type", "HMAC-SHA256"}})
	// HMAC-SHA256 of this canonical string (python command above).
	hmacCanonical = "appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&sign_type=HMAC-SHA256&time_end=20140903131540&total_fee=1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d"
	hmacSign      = "24E6E92F0FDF7A6E11079FDA7500F7AC2220CB42E026B3AFB4811FFA0E706008"

	// A failed payment: result_code FAIL, no transaction_id.
	failFields = exampleWith(Params{{"result_code", "FAIL"}, {"err_code", "NOTENOUGH"}, {"err_code_des", "余额不足"}}, "transaction_id")
	// MD5 of this canonical string (python command above).
	failCanonical = "appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&err_code=NOTENOUGH&err_code_des=余额不足&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=FAIL&return_code=SUCCESS&time_end=20140903131540&total_fee=1&trade_type=JSAPI&key=192006250b4c09247ec02edce69f6a2d"
	failSign      = "42F557EAE20E6A8A655781D495B1C323"

	// A field WeChat may add some day, signed like the others.
	futureFields = exampleWith(Params{{"future_field", "新字段 v2"}})
	// MD5 of this canonical string (python command above).
	futureCanonical = "appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&future_field=新字段 v2&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d"
	futureSign      = "0466039F43FD83D636BE68DA63C7CCFA"
)

func TestVerifyNotificationValid(t *testing.T) {
	tests := []struct {
		name      string
		fields    Params // what was signed
		canonical string
		body      []byte
		wantType  SignType
		succeeded bool
		txID      string
	}{
		{"WeChat example MD5", exampleFields(), exampleCanonical, exampleSignedMD5(), SignTypeMD5, true, "1004400740201409030005092168"},
		{"sign_type HMAC-SHA256", hmacFields, hmacCanonical, signedDoc(hmacFields, hmacSign), SignTypeHMACSHA256, true, "1004400740201409030005092168"},
		// An HMAC-SHA256 order's notification as WeChat sends it: no
		// sign_type; the sign's 64 digits say HMAC-SHA256.
		{"HMAC-SHA256 without sign_type", exampleFields(), exampleCanonical, signedDoc(exampleFields(), exampleSignHMACNoType), SignTypeHMACSHA256, true, "1004400740201409030005092168"},
		{"failed payment without transaction_id", failFields, failCanonical, signedDoc(failFields, failSign), SignTypeMD5, false, ""},
		{"future signed field", futureFields, futureCanonical, signedDoc(futureFields, futureSign), SignTypeMD5, true, "1004400740201409030005092168"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := refCanonical(tt.fields, officialKey); got != tt.canonical {
				t.Fatalf("fixture drift: fields give canonical string\n%s\nthe vector was made from\n%s", got, tt.canonical)
			}
			n, err := VerifyNotification(tt.body, officialKey)
			if err != nil {
				t.Fatalf("VerifyNotification: %v", err)
			}
			if n.SignType != tt.wantType {
				t.Errorf("SignType = %q, want %q", n.SignType, tt.wantType)
			}
			// Every field received is kept, sign included, in order.
			want := append(tt.fields.Clone(), Param{"sign", n.Get("sign")})
			if len(n.Params) != len(want) {
				t.Fatalf("got %d fields %v, want %d", len(n.Params), n.Params, len(want))
			}
			if tt.name != "WeChat example MD5" { // the docs' example puts sign in the middle
				for i := range want {
					if n.Params[i] != want[i] {
						t.Errorf("field %d = %q, want %q", i, n.Params[i], want[i])
					}
				}
			}
			for _, f := range tt.fields {
				if got := n.Get(f.Name); got != f.Value {
					t.Errorf("%s = %q, want %q", f.Name, got, f.Value)
				}
			}
			if n.MchID() != "10000100" || n.AppID() != "wx2421b1c4370ec43b" || n.OutTradeNo() != "1409811653" {
				t.Errorf("MchID, AppID, OutTradeNo = %q, %q, %q", n.MchID(), n.AppID(), n.OutTradeNo())
			}
			if n.TransactionID() != tt.txID {
				t.Errorf("TransactionID = %q, want %q", n.TransactionID(), tt.txID)
			}
			if n.Succeeded() != tt.succeeded {
				t.Errorf("Succeeded = %v, want %v", n.Succeeded(), tt.succeeded)
			}
			if fee, err := n.TotalFee(); err != nil || fee != 1 {
				t.Errorf("TotalFee = %d, %v, want 1", fee, err)
			}
		})
	}
	// The future field is kept for the caller.
	n, err := VerifyNotification(signedDoc(futureFields, futureSign), officialKey)
	if err != nil || n.Get("future_field") != "新字段 v2" {
		t.Errorf("future field: %v, %v", n, err)
	}
}

// Vectors of notifications that are correctly signed but must be refused for
// what they say. Each sign is the MD5 of the canonical string beside it
// (python command at the top of this file).
var refusedSigned = []struct {
	name      string
	fields    Params
	canonical string
	sign      string
	field     string // the field the *FieldError must name, or "" for another error
	msg       string // what the error must say
}{
	{
		"total_fee negative", exampleWith(Params{{"total_fee", "-1"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=-1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"38779A39A6496B4B4224F754A0C654E7", "total_fee", `"-1"`,
	},
	{
		"total_fee not an integer", exampleWith(Params{{"total_fee", "1.00"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=1.00&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"C997B9BA7C2AA70A62D1839EDDE16894", "total_fee", `"1.00"`,
	},
	{
		"total_fee leading zero", exampleWith(Params{{"total_fee", "01"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=01&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"B493FEB5C7A9E263815407CBB92F2B94", "total_fee", `"01"`,
	},
	{
		"total_fee leading space", exampleWith(Params{{"total_fee", " 1"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee= 1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"3D4A7860AC754E095DC82546088B0110", "total_fee", `" 1"`,
	},
	{
		"total_fee overflows int64", exampleWith(Params{{"total_fee", "9223372036854775808"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=9223372036854775808&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"18C00103AC7905B7CE43ABE01DB61262", "total_fee", "9223372036854775808",
	},
	{
		"coupon_fee_0 negative", exampleWith(Params{{"coupon_fee_0", "-5"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_fee_0=-5&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"73EF855442EE30AF30FF12CA4F773481", "coupon_fee_0", `"-5"`,
	},
	{
		"SUCCESS without transaction_id", exampleWith(nil, "transaction_id"),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&total_fee=1&trade_type=JSAPI&key=192006250b4c09247ec02edce69f6a2d",
		"EE03639870007879D9CD0CF5CF4221BC", "transaction_id", "missing",
	},
	{
		"SUCCESS without total_fee", exampleWith(nil, "total_fee"),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=SUCCESS&time_end=20140903131540&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"DA4B2CC84F6FF10D9E988DCD000D5536", "total_fee", "missing",
	},
	{
		"return_code FAIL", exampleWith(Params{{"return_code", "FAIL"}, {"return_msg", "签名失败"}}),
		"appid=wx2421b1c4370ec43b&attach=支付测试&bank_type=CFT&coupon_count=1&coupon_fee=10&coupon_id=10000&coupon_type=CASH&fee_type=CNY&is_subscribe=Y&mch_id=10000100&nonce_str=5d2b6c2a8db53831f7eda20af46e531c&openid=oUpF8uMEb4qRXf22hE3X68TekukE&out_trade_no=1409811653&result_code=SUCCESS&return_code=FAIL&return_msg=签名失败&time_end=20140903131540&total_fee=1&trade_type=JSAPI&transaction_id=1004400740201409030005092168&key=192006250b4c09247ec02edce69f6a2d",
		"3AAF1693DBD576A418806BABE1AD347B", "", `return_code is "FAIL"`,
	},
}

func TestVerifyNotificationRefusesSigned(t *testing.T) {
	for _, tt := range refusedSigned {
		t.Run(tt.name, func(t *testing.T) {
			if got := refCanonical(tt.fields, officialKey); got != tt.canonical {
				t.Fatalf("fixture drift: fields give canonical string\n%s\nthe vector was made from\n%s", got, tt.canonical)
			}
			n, err := VerifyNotification(signedDoc(tt.fields, tt.sign), officialKey)
			if err == nil {
				t.Fatalf("accepted: %v", n.Params)
			}
			if n != nil {
				t.Errorf("returned a notification with the error %v", err)
			}
			// The signature is right, so only the content check may refuse it.
			if errors.Is(err, ErrInvalidSignature) || errors.Is(err, ErrMissingSign) {
				t.Fatalf("refused for its signature, which is valid: %v", err)
			}
			var fe *FieldError
			if tt.field != "" {
				if !errors.As(err, &fe) || fe.Field != tt.field {
					t.Fatalf("err = %v, want a *FieldError naming %s", err, tt.field)
				}
			} else if errors.As(err, &fe) {
				t.Fatalf("err = %v is a *FieldError", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

func TestVerifyNotificationRefuses(t *testing.T) {
	good := exampleSignedMD5()
	replace := func(doc []byte, old, new string) []byte {
		if !bytes.Contains(doc, []byte(old)) {
			t.Fatalf("fixture does not contain %q", old)
		}
		return bytes.Replace(doc, []byte(old), []byte(new), 1)
	}
	hmacDoc := signedDoc(hmacFields, hmacSign)
	huge := append([]byte("<xml><appid>"), bytes.Repeat([]byte("x"), 1<<20)...) // never closed
	notUTF8 := append([]byte("<xml><attach>"), bytes.Repeat([]byte{0xff}, 1<<20)...)

	tests := []struct {
		name    string
		body    []byte
		key     APIKey
		wantErr error  // errors.Is target, or nil
		wantXML bool   // want a *XMLError
		msg     string // the error must say this
	}{
		{"WeChat's own sign under another key", []byte(notifyExample), officialKey, ErrInvalidSignature, false, ""},
		{"tampered total_fee", replace(good, "<total_fee>1</total_fee>", "<total_fee>2</total_fee>"), officialKey, ErrInvalidSignature, false, ""},
		{"tampered total_fee in CDATA", replace(good, "<total_fee>1</total_fee>", "<total_fee><![CDATA[10000]]></total_fee>"), officialKey, ErrInvalidSignature, false, ""},
		{"tampered Chinese attach", replace(good, "支付测试", "支付测试!"), officialKey, ErrInvalidSignature, false, ""},
		{"unsigned extra field", replace(good, "</xml>", "<promotion>1</promotion></xml>"), officialKey, ErrInvalidSignature, false, ""},
		{"missing sign", replace(good, "<sign><![CDATA["+exampleSignMD5+"]]></sign>", ""), officialKey, ErrMissingSign, false, ""},
		{"empty sign", replace(good, exampleSignMD5, ""), officialKey, ErrMissingSign, false, ""},
		{"lowercase sign", replace(good, exampleSignMD5, strings.ToLower(exampleSignMD5)), officialKey, ErrInvalidSignature, false, ""},
		{"wrong key", good, "192006250b4c09247ec02edce69f6a2e", ErrInvalidSignature, false, ""},
		{"HMAC sign without sign_type, tampered", replace(replace(good, exampleSignMD5, exampleSignHMACNoType), "<total_fee>1</total_fee>", "<total_fee>2</total_fee>"), officialKey, ErrInvalidSignature, false, ""},
		{"MD5 sign under an HMAC label", replace(hmacDoc, hmacSign, exampleSignMD5), officialKey, ErrInvalidSignature, false, ""},
		{"sign_type stripped from HMAC", replace(hmacDoc, "<sign_type><![CDATA[HMAC-SHA256]]></sign_type>", ""), officialKey, ErrInvalidSignature, false, ""},
		{"sign_type switched to MD5", replace(hmacDoc, "<![CDATA[HMAC-SHA256]]>", "<![CDATA[MD5]]>"), officialKey, ErrInvalidSignature, false, ""},
		{"unknown sign_type", replace(hmacDoc, "<![CDATA[HMAC-SHA256]]>", "<![CDATA[SHA1]]>"), officialKey, nil, false, `sign_type "SHA1"`},
		{"duplicate total_fee", replace(good, "</xml>", "<total_fee>100</total_fee></xml>"), officialKey, nil, true, "twice"},
		{"DOCTYPE", append([]byte(`<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>`), good...), officialKey, nil, true, "DOCTYPE"},
		{"entity", replace(good, "<![CDATA[支付测试]]>", "&xxe;"), officialKey, nil, true, "entity &xxe;"},
		{"1 MiB unterminated", huge, officialKey, nil, true, "ends inside"},
		{"1 MiB not UTF-8", notUTF8, officialKey, ErrNotUTF8, false, ""},
		{"empty body", nil, officialKey, nil, true, "expected an element"},
		{"JSON body", []byte(`{"return_code":"SUCCESS"}`), officialKey, nil, true, "expected an element"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := VerifyNotification(tt.body, tt.key)
			if err == nil {
				t.Fatalf("accepted: %v", n.Params)
			}
			if n != nil {
				t.Errorf("returned a notification with the error %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			var xe *XMLError
			if errors.As(err, &xe) != tt.wantXML {
				t.Errorf("err = %v (%T), want *XMLError: %v", err, err, tt.wantXML)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long: it must not echo the body", len(err.Error()))
			}
		})
	}
}

func TestNotifyReplies(t *testing.T) {
	const want = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
	if string(NotifyReplySuccess) != want {
		t.Errorf("NotifyReplySuccess = %s\nwant exactly %s", NotifyReplySuccess, want)
	}
	for _, tt := range []struct{ reason, wantMsg string }{
		{"签名失败", "签名失败"},
		{"order 1409811653 unknown", "order 1409811653 unknown"},
		{"x]]>y", "x]]>y"},
		{"", ""},
		// XML cannot carry NUL: the reason is lost, the FAIL is not.
		{"bad\x00reason", "error"},
	} {
		doc := NotifyReplyFail(tt.reason)
		p, err := DecodeXML(doc)
		if err != nil {
			t.Errorf("NotifyReplyFail(%q) = %s does not decode: %v", tt.reason, doc, err)
			continue
		}
		if p.Get("return_code") != "FAIL" || p.Get("return_msg") != tt.wantMsg {
			t.Errorf("NotifyReplyFail(%q) = %s: return_code %q, return_msg %q", tt.reason, doc, p.Get("return_code"), p.Get("return_msg"))
		}
		// And an independent parser reads the same.
		m, err := stdlibFlat(doc)
		if err != nil || m.fields["return_code"] != "FAIL" || m.fields["return_msg"] != tt.wantMsg {
			t.Errorf("encoding/xml reads NotifyReplyFail(%q) = %s as %v, %v", tt.reason, doc, m.fields, err)
		}
	}
}

func TestIsAmountField(t *testing.T) {
	for name, want := range map[string]bool{
		"total_fee":             true,
		"cash_fee":              true,
		"settlement_total_fee":  true,
		"coupon_fee":            true,
		"coupon_fee_0":          true,
		"coupon_fee_12":         true,
		"refund_fee":            true,
		"settlement_refund_fee": true,
		"coupon_fee_":           false,
		"coupon_fee_x":          false,
		"coupon_fee_1a":         false,
		"coupon_fee_-1":         false,
		"coupon_count":          false,
		"coupon_id_0":           false,
		"coupon_type_0":         false,
		"fee_type":              false,
		"cash_fee_type":         false,
		"Total_fee":             false,
		"total_fee_":            false,
		"total_fees":            false,
		"":                      false,
	} {
		if got := IsAmountField(name); got != want {
			t.Errorf("IsAmountField(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseAmount(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"88", 88, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"", 0, false},
		{"00", 0, false},
		{"01", 0, false},
		{"-0", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1.00", 0, false},
		{"1e2", 0, false},
		{"0x10", 0, false},
		{"1_000", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"１", 0, false}, // full-width digit
		{"9223372036854775808", 0, false},
	} {
		got, err := parseAmount(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseAmount(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
