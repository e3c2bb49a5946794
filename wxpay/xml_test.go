package wxpay

import (
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// notifyExample is the pay notification example of WeChat's 支付结果通知 page.
const notifyExample = `<xml>
  <appid><![CDATA[wx2421b1c4370ec43b]]></appid>
  <attach><![CDATA[支付测试]]></attach>
  <bank_type><![CDATA[CFT]]></bank_type>
  <fee_type><![CDATA[CNY]]></fee_type>
  <is_subscribe><![CDATA[Y]]></is_subscribe>
  <mch_id><![CDATA[10000100]]></mch_id>
  <nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str>
  <openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid>
  <out_trade_no><![CDATA[1409811653]]></out_trade_no>
  <result_code><![CDATA[SUCCESS]]></result_code>
  <return_code><![CDATA[SUCCESS]]></return_code>
  <sign><![CDATA[B552ED6B279343CB493C5DD0D78AB241]]></sign>
  <time_end><![CDATA[20140903131540]]></time_end>
  <total_fee>1</total_fee>
  <coupon_fee><![CDATA[10]]></coupon_fee>
  <coupon_count><![CDATA[1]]></coupon_count>
  <coupon_type><![CDATA[CASH]]></coupon_type>
  <coupon_id><![CDATA[10000]]></coupon_id>
  <trade_type><![CDATA[JSAPI]]></trade_type>
  <transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id>
</xml>`

func TestDecodeXMLExample(t *testing.T) {
	p, err := DecodeXML([]byte(notifyExample))
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 20 {
		t.Fatalf("got %d fields, want 20", len(p))
	}
	for name, want := range map[string]string{
		"attach": "支付测试", "total_fee": "1", "transaction_id": "1004400740201409030005092168", "sign": "B552ED6B279343CB493C5DD0D78AB241",
	} {
		if got := p.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if p[0].Name != "appid" || p[19].Name != "transaction_id" {
		t.Errorf("document order lost: %v", p)
	}
	// encoding/xml, an independent parser, must read the same values.
	if want := stdlibDecode(t, notifyExample); !reflect.DeepEqual(p.Map(), want) {
		t.Errorf("differs from encoding/xml:\n got %v\nwant %v", p.Map(), want)
	}
}

// stdlibDecode reads a flat document with encoding/xml.
func stdlibDecode(t testing.TB, doc string) map[string]string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	m := map[string]string{}
	depth := 0
	var name string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return m
		}
		if err != nil {
			t.Fatalf("encoding/xml: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				name = tok.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if depth == 2 {
				text.Write(tok)
			}
		case xml.EndElement:
			if depth == 2 {
				m[name] = text.String()
			}
			depth--
		}
	}
}

func TestXMLRoundTrip(t *testing.T) {
	tests := []Params{
		{{"a", "plain"}},
		{{"body", "腾讯充值中心-QQ会员充值"}, {"attach", "支付测试"}},
		{{"tricky", "x]]>y"}, {"twice", "]]>]]>"}, {"edge", "]]"}, {"gt", ">"}},
		{{"markup", "<a href=\"x\">&amp;</a>"}, {"ws", "  padded\tvalue \n"}},
		{{"empty", ""}, {"after", "v"}},
		{},
	}
	for _, p := range tests {
		doc, err := EncodeXML(p)
		if err != nil {
			t.Fatalf("EncodeXML(%v): %v", p, err)
		}
		got, err := DecodeXML(doc)
		if err != nil {
			t.Fatalf("DecodeXML(%s): %v", doc, err)
		}
		if len(got) != len(p) {
			t.Fatalf("round trip of %s: %d fields, want %d", doc, len(got), len(p))
		}
		for i := range p {
			if got[i] != p[i] {
				t.Errorf("round trip of %s: field %d = %q, want %q", doc, i, got[i], p[i])
			}
		}
		// And an independent parser agrees on what we wrote.
		if want := stdlibDecode(t, string(doc)); !reflect.DeepEqual(got.Map(), want) {
			t.Errorf("encoding/xml reads %s as %v, we read %v", doc, want, got.Map())
		}
	}
}

func TestEncodeXMLRefuses(t *testing.T) {
	tests := []Params{
		{{"bad name", "v"}},
		{{"", "v"}},
		{{"ns:name", "v"}},
		{{"ctl", "a\x00b"}},
		{{"ctl", "a\x1bb"}},
		{{"utf8", "a\xffb"}},
	}
	for _, p := range tests {
		if doc, err := EncodeXML(p); err == nil {
			t.Errorf("EncodeXML(%q) = %s, want an error", p[0], doc)
		}
	}
}

func TestDecodeXMLAccepts(t *testing.T) {
	tests := []struct {
		doc  string
		want Params
	}{
		{`<?xml version="1.0" encoding="UTF-8"?><xml><a>1</a></xml>`, Params{{"a", "1"}}},
		{"\ufeff<xml><a>1</a></xml>\n", Params{{"a", "1"}}},
		{`<xml><a/><b></b><c >x</c ></xml>`, Params{{"a", ""}, {"b", ""}, {"c", "x"}}},
		{`<xml><a>&lt;&gt;&amp;&quot;&apos;&#20320;&#x597D;</a></xml>`, Params{{"a", `<>&"'你好`}}},
		{`<xml><a>x<![CDATA[<y>]]>z</a></xml>`, Params{{"a", "x<y>z"}}},
		{"<xml><a>line\r\nnext\rlast</a></xml>", Params{{"a", "line\nnext\nlast"}}},
		{`<xml/>`, Params{}},
	}
	for _, tt := range tests {
		got, err := DecodeXML([]byte(tt.doc))
		if err != nil {
			t.Errorf("DecodeXML(%q): %v", tt.doc, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("DecodeXML(%q) = %v, want %v", tt.doc, got, tt.want)
		}
	}
}

func TestDecodeXMLRefuses(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"doctype", `<!DOCTYPE xml [<!ENTITY x "y">]><xml><a>&x;</a></xml>`, "DOCTYPE"},
		{"doctype after decl", `<?xml version="1.0"?><!DOCTYPE foo SYSTEM "file:///etc/passwd"><xml/>`, "DOCTYPE"},
		{"custom entity", `<xml><a>&x;</a></xml>`, "entity &x;"},
		{"external entity", `<xml><a>&ext;</a></xml>`, "not allowed"},
		{"nested", `<xml><a><b>1</b></a></xml>`, "nested"},
		{"attribute", `<xml><a k="v">1</a></xml>`, "attributes"},
		{"root attribute", `<xml k="v"><a>1</a></xml>`, "attributes"},
		{"comment", `<xml><!-- c --><a>1</a></xml>`, "comments"},
		{"pi", `<xml><?php echo 1 ?><a>1</a></xml>`, "processing"},
		{"duplicate", `<xml><a>1</a><a>2</a></xml>`, "twice"},
		{"mismatched", `<xml><a>1</b></xml>`, "closes"},
		{"unterminated", `<xml><a>1</a>`, "ends"},
		{"unterminated cdata", `<xml><a><![CDATA[1</a></xml>`, "CDATA"},
		{"trailing", `<xml><a>1</a></xml><xml/>`, "after the root"},
		{"text at top", `<xml>hello<a>1</a></xml>`, "text outside"},
		{"wrong root", `<root><a>1</a></root>`, "root element"},
		{"empty", ``, "expected an element"},
		{"not xml", `{"a": 1}`, "expected an element"},
		{"control char", "<xml><a>\x01</a></xml>", "control character"},
		{"bad char ref", `<xml><a>&#0;</a></xml>`, "character reference"},
		{"bare ampersand", `<xml><a>a & b</a></xml>`, "entity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeXML([]byte(tt.doc))
			if err == nil {
				t.Fatalf("accepted %q", tt.doc)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
	if _, err := DecodeXML([]byte("<xml><a>\xff</a></xml>")); !errors.Is(err, ErrNotUTF8) {
		t.Errorf("invalid UTF-8: %v", err)
	}
	many := "<xml>" + strings.Repeat("<a>1</a>", 1) + func() string {
		var b strings.Builder
		for i := 0; i < MaxFields+1; i++ {
			b.WriteString("<f")
			b.WriteString(strings.Repeat("x", i%7))
			b.WriteString(string(rune('a' + i%26)))
			b.WriteString(strings.Repeat("y", i/26))
			b.WriteString("/>")
		}
		return b.String()
	}() + "</xml>"
	if _, err := DecodeXML([]byte(many)); err == nil {
		t.Error("accepted more than MaxFields fields")
	}
}

func BenchmarkDecodeXMLNotify(b *testing.B) {
	doc := []byte(notifyExample)
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := DecodeXML(doc); err != nil {
			b.Fatal(err)
		}
	}
}
