package wxpay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const officialKey APIKey = "192006250b4c09247ec02edce69f6a2d"

// officialParams is the example of WeChat's 安全规范 page (also in WxJava's
// SignUtilsTest), in a deliberately unsorted order.
func officialParams() Params {
	return Params{
		{"nonce_str", "ibuaiVcKdpRxkhJA"},
		{"mch_id", "10000100"},
		{"body", "test"},
		{"device_info", "1000"},
		{"appid", "wxd930ea5d5a258f4f"},
	}
}

// chineseParams carries UTF-8 values, an unknown field and an empty field
// (which signing skips).
func chineseParams() Params {
	return Params{
		{"body", "腾讯充值中心-QQ会员充值"},
		{"attach", "支付测试"},
		{"appid", "wxd930ea5d5a258f4f"},
		{"mch_id", "10000100"},
		{"device_info", ""},
		{"nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"},
		{"zzz_new_field", "x"},
	}
}

// Vectors computed outside this code. The official one is WeChat's own; the
// others were computed with Python's hashlib and hmac over the canonical
// string printed beside them:
//
//	python3 -c 'import hashlib,hmac; s="<string>"; k=b"192006250b4c09247ec02edce69f6a2d";
//	  print(hashlib.md5(s.encode()).hexdigest().upper(),
//	        hmac.new(k, s.encode(), hashlib.sha256).hexdigest().upper())'
func TestSignVectors(t *testing.T) {
	tests := []struct {
		name   string
		params Params
		st     SignType
		want   string
	}{
		// appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d
		{"official MD5", officialParams(), SignTypeMD5, "9A0A8659F005D6984697E2CA0A9CF3B7"},
		{"official HMAC-SHA256", officialParams(), SignTypeHMACSHA256, "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"},
		// appid=wxd930ea5d5a258f4f&attach=支付测试&body=腾讯充值中心-QQ会员充值&mch_id=10000100&nonce_str=5K8264ILTKCH16CQ2502SI8ZNMTM67VS&zzz_new_field=x&key=192006250b4c09247ec02edce69f6a2d
		{"chinese MD5", chineseParams(), SignTypeMD5, "EAC2578E08BFFECAB912F998655D8E5B"},
		{"chinese HMAC-SHA256", chineseParams(), SignTypeHMACSHA256, "24560E4EE357905531F8276BFBC4581ECCED2F15B061D996AD68B023D7BCA2B2"},
		// A sign field already present is not signed.
		{"sign ignored", append(officialParams(), Param{"sign", "WHATEVER"}), SignTypeMD5, "9A0A8659F005D6984697E2CA0A9CF3B7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sign(tt.params, officialKey, tt.st)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Sign = %s, want %s", got, tt.want)
			}
		})
	}
}

// The trap a popular guide sets: HMAC over the string without "&key=…".
// Our HMAC must not produce it.
func TestSignHMACIncludesKeySuffix(t *testing.T) {
	got, _ := Sign(officialParams(), officialKey, SignTypeHMACSHA256)
	if strings.HasPrefix(got, "F734F0E6") {
		t.Fatalf("HMAC computed without the &key= suffix: %s", got)
	}
}

func TestSignUnknownType(t *testing.T) {
	if _, err := Sign(officialParams(), officialKey, "SHA1"); err == nil {
		t.Fatal("signing with an unknown sign type succeeded")
	}
}

func TestSignDuplicateField(t *testing.T) {
	p := append(officialParams(), Param{"body", "other"})
	if _, err := Sign(p, officialKey, SignTypeMD5); !errors.Is(err, ErrDuplicateField) {
		t.Fatalf("err = %v, want ErrDuplicateField", err)
	}
}

func TestSignManyFields(t *testing.T) {
	// More fields than the stack buffer holds, and values longer than
	// the stack byte buffer: the result must not depend on either.
	var p Params
	for i := 0; i < 100; i++ {
		p = append(p, Param{fmt.Sprintf("f%03d", i), strings.Repeat("v", 30)})
	}
	a, err := Sign(p, officialKey, SignTypeHMACSHA256)
	if err != nil {
		t.Fatal(err)
	}
	// Reverse the order: signing sorts.
	r := make(Params, len(p))
	for i := range p {
		r[len(p)-1-i] = p[i]
	}
	b, _ := Sign(r, officialKey, SignTypeHMACSHA256)
	if a != b {
		t.Fatalf("order changed the signature: %s vs %s", a, b)
	}
}

func TestVerify(t *testing.T) {
	signed := func(p Params, st SignType) Params {
		s, err := Sign(p, officialKey, st)
		if err != nil {
			t.Fatal(err)
		}
		return append(p.Clone(), Param{"sign", s})
	}
	tamper := func(p Params, name, value string) Params {
		p = p.Clone()
		p.Set(name, value)
		return p
	}
	good := signed(chineseParams(), SignTypeMD5)
	goodHMAC := signed(chineseParams(), SignTypeHMACSHA256)
	tests := []struct {
		name string
		p    Params
		st   SignType
		key  APIKey
		want error
	}{
		{"valid MD5", good, SignTypeMD5, officialKey, nil},
		{"valid HMAC", goodHMAC, SignTypeHMACSHA256, officialKey, nil},
		{"wrong type", good, SignTypeHMACSHA256, officialKey, ErrInvalidSignature},
		{"tampered amount", tamper(good, "mch_id", "10000101"), SignTypeMD5, officialKey, ErrInvalidSignature},
		{"tampered chinese", tamper(good, "attach", "支付测试!"), SignTypeMD5, officialKey, ErrInvalidSignature},
		{"extra unknown field", append(good.Clone(), Param{"new_field", "1"}), SignTypeMD5, officialKey, ErrInvalidSignature},
		{"emptied field", tamper(good, "zzz_new_field", ""), SignTypeMD5, officialKey, ErrInvalidSignature},
		// An empty field is skipped by signing, so adding one is harmless.
		{"extra empty field", append(good.Clone(), Param{"empty", ""}), SignTypeMD5, officialKey, nil},
		{"lowercase sign", tamper(good, "sign", strings.ToLower(good.Get("sign"))), SignTypeMD5, officialKey, ErrInvalidSignature},
		{"wrong key", good, SignTypeMD5, "192006250b4c09247ec02edce69f6a2e", ErrInvalidSignature},
		{"missing sign", chineseParams(), SignTypeMD5, officialKey, ErrMissingSign},
		{"empty sign", tamper(good, "sign", ""), SignTypeMD5, officialKey, ErrMissingSign},
		{"truncated sign", tamper(good, "sign", good.Get("sign")[:31]), SignTypeMD5, officialKey, ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.p, tt.key, tt.st)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseSignType(t *testing.T) {
	for in, want := range map[string]SignType{"": SignTypeMD5, "MD5": SignTypeMD5, "HMAC-SHA256": SignTypeHMACSHA256} {
		got, err := ParseSignType(in)
		if err != nil || got != want {
			t.Errorf("ParseSignType(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"md5", "SHA256", "HMAC_SHA256", "RSA"} {
		if _, err := ParseSignType(in); err == nil {
			t.Errorf("ParseSignType(%q) accepted", in)
		}
	}
}

func TestAPIKeyNeverPrinted(t *testing.T) {
	k := APIKey("192006250b4c09247ec02edce69f6a2d")
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %s %+v %#v", k, k, k, k), fmt.Sprintf("%v", struct{ K APIKey }{k})} {
		if strings.Contains(s, "192006") {
			t.Fatalf("key printed: %s", s)
		}
	}
	for _, tt := range []struct {
		key APIKey
		ok  bool
	}{
		{k, true},
		{"", false},
		{"short", false},
		{APIKey(strings.Repeat("a", 33)), false},
		{APIKey(strings.Repeat("a", 31) + "!"), false},
	} {
		err := tt.key.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("Validate(len %d) = %v", len(tt.key), err)
		}
		if err != nil && len(tt.key) > 4 && strings.Contains(err.Error(), string(tt.key)) {
			t.Errorf("Validate error reveals the key: %v", err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	// The 11 fields of a typical unifiedorder request.
	p := Params{
		{"appid", "wxd930ea5d5a258f4f"}, {"mch_id", "10000100"}, {"nonce_str", "ibuaiVcKdpRxkhJA5K8264ILTKCH16CQ"},
		{"body", "腾讯充值中心-QQ会员充值"}, {"out_trade_no", "20150806125346"}, {"total_fee", "88"},
		{"spbill_create_ip", "123.12.12.123"}, {"notify_url", "https://pay.example.com/wxpay/notify"},
		{"trade_type", "JSAPI"}, {"openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, {"attach", "说明"},
	}
	for _, st := range []SignType{SignTypeMD5, SignTypeHMACSHA256} {
		b.Run(string(st), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Sign(p, officialKey, st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSignFieldOrder checks the sort and the duplicate check that signature
// folds into it against refSign, over the orders and names that exercise
// its shortcuts: input already sorted (one comparison per field), reversed,
// names sharing their first byte or being prefixes of each other, bytes
// above 0x7f, an empty name, and skipped fields (empty values, sign) placed
// where they would break the order if they counted.
func TestSignFieldOrder(t *testing.T) {
	sorted := Params{
		{"appid", "wxd930ea5d5a258f4f"}, {"attach", "支付测试"}, {"body", "腾讯充值中心-QQ会员充值"},
		{"mch_id", "10000100"}, {"nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"},
		{"notify_url", "https://pay.example.com/wxpay/notify"}, {"openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
		{"out_trade_no", "20150806125346"}, {"spbill_create_ip", "123.12.12.123"}, {"total_fee", "88"},
		{"trade_type", "JSAPI"},
	}
	reversed := make(Params, len(sorted))
	for i, f := range sorted {
		reversed[len(sorted)-1-i] = f
	}
	tests := []struct {
		name string
		p    Params
		dup  bool
	}{
		{"already sorted", sorted, false},
		{"reverse sorted", reversed, false},
		{"sorted, skipped fields out of place", Params{
			{"zz_empty", ""}, {"appid", "wx1"}, {"sign", "X"}, {"body", "b"}, {"a_empty", ""},
			{"mch_id", "1"}, {"sign", "Y"}, {"nonce_str", "n"}, {"aaa", ""},
		}, false},
		{"reversed, skipped fields out of place", Params{
			{"aaa", ""}, {"nonce_str", "n"}, {"sign", "Y"}, {"mch_id", "1"}, {"zz_empty", ""},
			{"body", "b"}, {"sign", "X"}, {"appid", "wx1"},
		}, false},
		{"shared first bytes and prefixes", Params{
			{"out_trade_no", "1"}, {"a_b", "2"}, {"out_refund_no", "3"}, {"ab", "4"}, {"o", "5"},
			{"a", "6"}, {"openid", "7"}, {"A", "8"}, {"out", "9"}, {"_x", "10"}, {"a\x00", "11"},
		}, false},
		{"high bytes and an empty name", Params{
			{"é", "1"}, {"z", "2"}, {"", "3"}, {"\xff", "4"}, {"e", "5"}, {"éa", "6"},
		}, false},
		{"single field", Params{{"appid", "wx1"}}, false},
		{"only skipped fields", Params{{"sign", "X"}, {"body", ""}}, false},
		{"empty duplicate is skipped", Params{{"appid", "wx1"}, {"body", ""}, {"body", "b"}}, false},
		{"duplicate sign is skipped", Params{{"sign", "X"}, {"appid", "wx1"}, {"sign", "Y"}}, false},
		{"duplicate, sorted and adjacent", Params{{"appid", "wx1"}, {"body", "a"}, {"body", "b"}, {"mch_id", "1"}}, true},
		{"duplicate, sorted, skipped field between", Params{{"appid", "wx1"}, {"body", "a"}, {"sign", "X"}, {"body", "b"}}, true},
		{"duplicate, same value", Params{{"appid", "wx1"}, {"appid", "wx1"}}, true},
		{"duplicate, unsorted", Params{{"mch_id", "1"}, {"body", "a"}, {"nonce_str", "n"}, {"appid", "wx1"}, {"body", "b"}}, true},
		{"duplicate, unsorted, first position", Params{{"body", "a"}, {"mch_id", "1"}, {"appid", "wx1"}, {"appid", "wx2"}}, true},
		{"duplicate, reversed", Params{{"trade_type", "JSAPI"}, {"total_fee", "1"}, {"body", "b"}, {"total_fee", "2"}, {"appid", "wx1"}}, true},
		{"duplicate among shared first bytes", Params{{"out_trade_no", "1"}, {"openid", "o"}, {"out_refund_no", "2"}, {"out_trade_no", "3"}}, true},
		{"duplicate empty name", Params{{"", "1"}, {"a", "2"}, {"", "3"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, st := range []SignType{SignTypeMD5, SignTypeHMACSHA256} {
				in := tt.p.Clone()
				got, err := Sign(tt.p, officialKey, st)
				if !slices.Equal(in, tt.p) {
					t.Fatalf("Sign modified its input: %q", tt.p)
				}
				if tt.dup {
					if !errors.Is(err, ErrDuplicateField) || got != "" {
						t.Fatalf("%s: Sign = %q, %v, want ErrDuplicateField", st, got, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", st, err)
				}
				if want := refSign(signedFields(tt.p), officialKey, st); got != want {
					t.Errorf("%s: Sign = %s, want %s", st, got, want)
				}
			}
		})
	}
}

// TestSignRandomOrders compares Sign with refSign over random documents
// whose names, drawn from a small alphabet, often share first bytes and
// repeat, in sorted, reversed and shuffled order, with more fields than
// signature sorts on the stack in some.
func TestSignRandomOrders(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "o", "_", "A", "é", "\x00"}
	for n := 0; n < 3000; n++ {
		var p Params
		for range rng.IntN(60) {
			var name string
			for range rng.IntN(4) {
				name += alphabet[rng.IntN(len(alphabet))]
			}
			value := ""
			if rng.IntN(6) > 0 {
				value = fmt.Sprint(rng.IntN(100))
			}
			if rng.IntN(20) == 0 {
				name = "sign"
			}
			p = append(p, Param{name, value})
		}
		switch n % 3 {
		case 0:
			sort.SliceStable(p, func(i, j int) bool { return p[i].Name < p[j].Name })
		case 1:
			sort.SliceStable(p, func(i, j int) bool { return p[i].Name > p[j].Name })
		}
		q := signedFields(p)
		seen := map[string]bool{}
		dup := false
		for _, f := range q {
			dup = dup || seen[f.Name]
			seen[f.Name] = true
		}
		st := []SignType{SignTypeMD5, SignTypeHMACSHA256}[n%2]
		got, err := Sign(p, officialKey, st)
		if dup {
			if !errors.Is(err, ErrDuplicateField) {
				t.Fatalf("%q: Sign = %q, %v, want ErrDuplicateField", p, got, err)
			}
			continue
		}
		if want := refSign(q, officialKey, st); err != nil || got != want {
			t.Fatalf("%q: Sign = %q, %v, want %s", p, got, err, want)
		}
	}
}

// signedFields returns the fields of p that a signature covers.
func signedFields(p Params) Params {
	var q Params
	for _, f := range p {
		if f.Value != "" && f.Name != "sign" {
			q = append(q, f)
		}
	}
	return q
}

// A key that slips into a log, an error or a dump reads [REDACTED]: fmt,
// encoding/json (also inside a Client) and zap.
func TestAPIKeyNeverShows(t *testing.T) {
	const key = APIKey("192006250b4c09247ec02edce69f6a2d")
	c := &Client{MchID: "10000100", Key: key}
	js, err := json.Marshal(struct {
		MchID string
		Key   APIKey
		Keys  map[string]APIKey
	}{"10000100", key, map[string]APIKey{"a": key}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.DebugLevel))
	logger.Info("dump", zap.Any("key", key), zap.Stringer("k", key), zap.Reflect("r", struct{ K APIKey }{key}))
	_ = logger.Sync()
	for what, out := range map[string]string{
		"fmt %v": fmt.Sprintf("%v", c), "fmt %+v": fmt.Sprintf("%+v", c), "fmt %#v": fmt.Sprintf("%#v", c.Key), "fmt.Sprint": fmt.Sprint(key), "fmt %q": fmt.Sprintf("%q", key),
		"json": string(js), "zap": buf.String(),
	} {
		if strings.Contains(out, string(key)) || !strings.Contains(out, "REDACTED") {
			t.Errorf("%s shows the key (or no redaction): %s", what, out)
		}
	}
}
