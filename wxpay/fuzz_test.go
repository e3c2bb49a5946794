package wxpay

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

// stdDoc is a flat document as encoding/xml reads it.
type stdDoc struct {
	root   string
	fields map[string]string
	n      int // fields seen, duplicates included
}

// stdlibFlat reads a flat document with encoding/xml, an independent
// parser. Unlike stdlibDecode in xml_test.go it returns encoding/xml's
// errors instead of failing the test, and it refuses what is not flat: more
// than one root, or an element inside a field.
func stdlibFlat(doc []byte) (stdDoc, error) {
	dec := xml.NewDecoder(bytes.NewReader(doc))
	d := stdDoc{fields: map[string]string{}}
	depth, roots := 0, 0
	var name string
	var text bytes.Buffer
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if roots != 1 {
				return d, fmt.Errorf("%d root elements", roots)
			}
			return d, nil
		}
		if err != nil {
			return d, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				roots++
				d.root = tok.Name.Local
			case 2:
				name = tok.Name.Local
				text.Reset()
			default:
				return d, errors.New("element nested in a field")
			}
		case xml.CharData:
			if depth == 2 {
				text.Write(tok)
			}
		case xml.EndElement:
			if depth == 2 {
				d.fields[name] = text.String()
				d.n++
			}
			depth--
		}
	}
}

// Seeds: real documents and the shapes a flat decoder gets wrong.
var xmlSeeds = []string{
	notifyExample,
	// The answer of WeChat's unifiedorder page.
	`<xml>
   <return_code><![CDATA[SUCCESS]]></return_code>
   <return_msg><![CDATA[OK]]></return_msg>
   <appid><![CDATA[wx2421b1c4370ec43b]]></appid>
   <mch_id><![CDATA[10000100]]></mch_id>
   <nonce_str><![CDATA[IITRi8Iabbblz1Jc]]></nonce_str>
   <openid><![CDATA[oUpF8uMuAJO_M2pxb1Q9zNjWeS6o]]></openid>
   <sign><![CDATA[7921E432F65EB8ED0CE9755F0E86D72F]]></sign>
   <result_code><![CDATA[SUCCESS]]></result_code>
   <prepay_id><![CDATA[wx201411101639507cbf6ffd8b0779950874]]></prepay_id>
   <trade_type><![CDATA[JSAPI]]></trade_type>
</xml>`,
	// The plaintext of an encrypted refund notification's req_info.
	`<root>
<out_refund_no><![CDATA[131811191610442717309]]></out_refund_no>
<out_trade_no><![CDATA[71106718111915575302817]]></out_trade_no>
<refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account>
<refund_fee><![CDATA[3960]]></refund_fee>
<refund_id><![CDATA[50000408942018111907145868882]]></refund_id>
<refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout>
<refund_request_source><![CDATA[API]]></refund_request_source>
<refund_status><![CDATA[SUCCESS]]></refund_status>
<settlement_refund_fee><![CDATA[3960]]></settlement_refund_fee>
<settlement_total_fee><![CDATA[3960]]></settlement_total_fee>
<success_time><![CDATA[2018-11-19 16:24:13]]></success_time>
<total_fee><![CDATA[3960]]></total_fee>
<transaction_id><![CDATA[4200000215201811190261405420]]></transaction_id>
</root>`,
	string(NotifyReplySuccess),
	`<?xml version="1.0" encoding="UTF-8"?>` + "\n<xml><a>1</a></xml>",
	"\ufeff<xml><a>1</a></xml>\n",
	// "]]>" split across CDATA sections, as EncodeXML writes it.
	`<xml><a><![CDATA[x]]]]><![CDATA[>y]]></a></xml>`,
	`<xml><a><![CDATA[]]]]><![CDATA[>]]]]><![CDATA[>]]></a></xml>`,
	`<xml><a>x<![CDATA[<y>]]>z&amp;<![CDATA[&amp;]]></a><b><![CDATA[]]></b><c/></xml>`,
	`<xml><a>&lt;&gt;&amp;&quot;&apos;&#20320;&#x597D;&#x1F600;</a></xml>`,
	// Line endings: raw ones are normalised, character references are not.
	"<xml><a>l\r\nn\rm</a></xml>",
	"<xml><a><![CDATA[x\r]]>\ny</a></xml>",
	"<xml><a>&#13;&#10;x&#13;\ny</a></xml>",
	"<xml><a>x\r&amp;\ny</a></xml>",
	"<xml>\r\n<a >\t1</a\r\n></xml >",
	`<xml><a.b-c_d>1</a.b-c_d><_e>2</_e></xml>`,
}

func FuzzDecodeXML(f *testing.F) {
	for _, s := range xmlSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, root := range []string{"xml", "root"} {
			var (
				p   Params
				err error
			)
			if root == "xml" {
				p, err = DecodeXML(data)
			} else {
				p, err = DecodeFlatXML(data, root)
			}
			if err != nil {
				if p != nil {
					t.Fatalf("DecodeFlatXML(%q) returned fields %q with the error %v", root, []Param(p), err)
				}
				continue
			}

			// Differential: what we accept, encoding/xml reads alike.
			std, err := stdlibFlat(data)
			if err != nil {
				t.Fatalf("we accept <%s> %q, encoding/xml refuses it: %v", root, data, err)
			}
			if std.root != root {
				t.Fatalf("we accept %q as <%s>, encoding/xml sees <%s>", data, root, std.root)
			}
			if std.n != len(p) || !reflect.DeepEqual(p.Map(), std.fields) {
				t.Fatalf("%q:\n we read %q\nencoding/xml reads %q", data, p.Map(), std.fields)
			}

			// Round trip: what we decoded encodes, and decodes back alike.
			enc, err := AppendXML(nil, root, p)
			if err != nil {
				t.Fatalf("AppendXML of the decoded %q: %v", []Param(p), err)
			}
			back, err := DecodeFlatXML(enc, root)
			if err != nil {
				t.Fatalf("re-encoded document %q does not decode: %v", enc, err)
			}
			if len(back) != len(p) {
				t.Fatalf("round trip of %q via %q: %q", []Param(p), enc, []Param(back))
			}
			for i := range p {
				if back[i] != p[i] {
					t.Fatalf("round trip of %q via %q: field %d = %q", []Param(p), enc, i, back[i])
				}
			}
		}
	})
}

// The notifications the verification fuzzer starts from. The verifying ones
// carry the python-computed signs of notify_test.go.
func notificationSeeds() [][]byte {
	good := exampleSignedMD5()
	seeds := [][]byte{
		good,
		signedDoc(hmacFields, hmacSign),
		signedDoc(failFields, failSign),
		signedDoc(futureFields, futureSign),
		[]byte(notifyExample),
		bytes.Replace(good, []byte("<total_fee>1</total_fee>"), []byte("<total_fee>2</total_fee>"), 1),
	}
	for _, r := range refusedSigned {
		seeds = append(seeds, signedDoc(r.fields, r.sign))
	}
	return seeds
}

func FuzzVerifyNotification(f *testing.F) {
	// The signed content of every seed that verifies. A body the fuzzer
	// derives from one (reformatted, CDATA turned to text, empty fields
	// added, fields reordered…) may verify only if it carries the same
	// signed content. The content is compared as the canonical string: the
	// v2 form cannot tell "a=1&b=2" from a single field a="1&b=2", an
	// ambiguity of WeChat's protocol that no verifier can remove.
	signedContent := map[string]bool{}
	for _, fields := range []Params{exampleFields(), hmacFields, failFields, futureFields} {
		signedContent[refCanonical(fields, officialKey)] = true
	}
	for _, s := range notificationSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := VerifyNotification(body, officialKey)
		if err != nil {
			if n != nil {
				t.Fatalf("a notification came with the error %v", err)
			}
			return
		}
		var st SignType
		switch n.Get("sign_type") {
		case "", "MD5":
			st = SignTypeMD5
		case "HMAC-SHA256":
			st = SignTypeHMACSHA256
		default:
			t.Fatalf("verified with sign_type %q", n.Get("sign_type"))
		}
		if n.SignType != st {
			t.Fatalf("SignType %q for sign_type %q", n.SignType, n.Get("sign_type"))
		}
		// Re-signing, independently of sign.go, reproduces the sign.
		if want := refSign(n.Params, officialKey, st); n.Get("sign") != want {
			t.Fatalf("verified %q with sign %s, but its fields sign to %s", body, n.Get("sign"), want)
		}
		if got, err := Sign(n.Params, officialKey, st); err != nil || got != n.Get("sign") {
			t.Fatalf("Sign of the verified fields = %s, %v; sign is %s", got, err, n.Get("sign"))
		}
		if c := refCanonical(n.Params, officialKey); !signedContent[c] {
			t.Fatalf("%q verified with signed content that no seed signed:\n%s", body, c)
		}
		// What verifies is a payment's notification.
		if n.Get("return_code") != "SUCCESS" || n.MchID() == "" || n.OutTradeNo() == "" {
			t.Fatalf("verified without return_code SUCCESS, mch_id or out_trade_no: %v", n.Params.Map())
		}
		if n.Succeeded() {
			if fee, err := n.TotalFee(); err != nil || fee < 0 || n.TransactionID() == "" {
				t.Fatalf("verified a SUCCESS with total_fee %d, %v and transaction_id %q", fee, err, n.TransactionID())
			}
		}
	})
}

// The seeds of FuzzDecodeXML that test the line-ending rules, decoded to the
// values encoding/xml gives them (checked there by the fuzz target too).
func TestDecodeXMLLineEndings(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"<xml><a>l\r\nn\rm</a></xml>", "l\nn\nm"},
		// A CR that ends a CDATA section is a line end of its own.
		{"<xml><a><![CDATA[x\r]]>\ny</a></xml>", "x\n\ny"},
		// Character references are not line ends: they stay as written.
		{"<xml><a>&#13;&#10;x&#13;\ny</a></xml>", "\r\nx\r\ny"},
		{"<xml><a>x\r&amp;\ny</a></xml>", "x\n&\ny"},
	} {
		p, err := DecodeXML([]byte(tt.doc))
		if err != nil {
			t.Errorf("DecodeXML(%q): %v", tt.doc, err)
			continue
		}
		if got := p.Get("a"); got != tt.want {
			t.Errorf("DecodeXML(%q) = %q, want %q", tt.doc, got, tt.want)
		}
		std, err := stdlibFlat([]byte(tt.doc))
		if err != nil || std.fields["a"] != tt.want {
			t.Errorf("encoding/xml reads %q as %q, %v: the expectation is wrong", tt.doc, std.fields["a"], err)
		}
	}
}

// A value with a carriage return must reach the other side intact: WeChat
// signs what its XML parser reads, and a parser turns a raw CR into LF.
func TestEncodeXMLCarriageReturn(t *testing.T) {
	p := Params{{"detail", "line 1\r\nline 2\rend"}, {"cr", "\r"}, {"mix", "a]]>\r]]>b"}}
	doc, err := EncodeXML(p)
	if err != nil {
		t.Fatal(err)
	}
	std, err := stdlibFlat(doc)
	if err != nil {
		t.Fatalf("encoding/xml: %v", err)
	}
	if !reflect.DeepEqual(std.fields, p.Map()) {
		t.Errorf("encoding/xml reads %s as %q, want %q", doc, std.fields, p.Map())
	}
	back, err := DecodeXML(doc)
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Errorf("DecodeXML(%s) = %q, %v; want %q", doc, []Param(back), err, []Param(p))
	}
}

// The XML declaration: version 1.0 and UTF-8 are read; a document that
// declares anything else is refused rather than read as UTF-8 XML 1.0
// (encoding/xml refuses these too). The first refusal is the fuzzer's
// testdata/fuzz/FuzzDecodeXML/99f5f5ec2a29df16.
func TestDecodeXMLDeclaration(t *testing.T) {
	for _, decl := range []string{
		`<?xml version="1.0"?>`,
		`<?xml version='1.0'?>`,
		`<?xml version="1.0" encoding="UTF-8"?>`,
		`<?xml version="1.0" encoding="utf-8" standalone="yes"?>`,
		`<?xml version = "1.0"  encoding = 'Utf-8' standalone='no' ?>`,
		"<?xml\tversion=\"1.0\"\r\n?>",
	} {
		doc := decl + "\n<xml><a>1</a></xml>"
		if p, err := DecodeXML([]byte(doc)); err != nil || p.Get("a") != "1" {
			t.Errorf("DecodeXML(%q) = %q, %v", doc, []Param(p), err)
		}
		if _, err := stdlibFlat([]byte(doc)); err != nil {
			t.Errorf("encoding/xml refuses %q: %v", doc, err)
		}
	}
	for _, tt := range []struct{ decl, msg string }{
		{`<?xml version="0"?>`, `version "0"`},
		{`<?xml version="1.1"?>`, `version "1.1"`},
		{`<?xml version="1.0" encoding="GBK"?>`, `encoding "GBK"`},
		{`<?xml version="1.0" encoding="UTF8"?>`, `encoding "UTF8"`},
		{`<?xml version="1.0" encoding="ISO-8859-1"?>`, `encoding "ISO-8859-1"`},
		{`<?xml encoding="UTF-8"?>`, "no version"},
		{`<?xml?>`, "no version"},
		{`<?xml version="1.0"encoding="UTF-8"?>`, "malformed"},
		{`<?xml version="1.0" standalone="yes" encoding="UTF-8"?>`, "malformed"},
		{`<?xml version="1.0" standalone="maybe"?>`, "malformed"},
		{`<?xml version=1.0?>`, "malformed"},
		{`<?xml version="1.0?>`, "malformed"},
		{`<?xml-stylesheet href="a.xsl"?>`, "malformed"},
		{`<?xml version="1.0" foo="bar"?>`, "malformed"},
	} {
		doc := tt.decl + "<xml><a>1</a></xml>"
		_, err := DecodeXML([]byte(doc))
		var xe *XMLError
		if !errors.As(err, &xe) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("DecodeXML(%q) = %v, want an *XMLError saying %q", doc, err, tt.msg)
		}
	}
}
