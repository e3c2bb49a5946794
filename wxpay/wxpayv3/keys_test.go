package wxpayv3

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// pemBody returns the base64 lines of a PEM file, to check that errors do
// not repeat key material.
func pemBody(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

func TestParsePrivateKey(t *testing.T) {
	f := fx(t)
	pkcs8 := readTestdata(t, "merchant_key.pem")
	pkcs1 := readTestdata(t, "merchant_key_pkcs1.pem")
	cert := readTestdata(t, "merchant_cert.pem")
	good := []struct {
		name string
		pem  []byte
	}{
		{"PKCS#8", pkcs8},
		{"PKCS#1", pkcs1},
		{"after a certificate, CRLF", bytes.ReplaceAll(append(append([]byte{}, cert...), pkcs8...), []byte("\n"), []byte("\r\n"))},
		{"leading text", append([]byte("apiclient_key.pem:\n"), pkcs1...)},
	}
	for _, tt := range good {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.pem)
			if err != nil {
				t.Fatal(err)
			}
			// The key is the one of the merchant certificate (made by Python).
			if !k.PublicKey.Equal(f.merchantCert.PublicKey) {
				t.Fatal("parsed key is not the merchant certificate's key")
			}
		})
	}

	corrupt := bytes.Replace(pkcs8, []byte("MII"), []byte("MIA"), 1)
	bad := []struct {
		name string
		pem  []byte
		want string
	}{
		{"empty", nil, "no PEM block"},
		{"not PEM", []byte("hello"), "no PEM block"},
		{"certificate only", cert, "found CERTIFICATE"},
		{"1024 bits", readTestdata(t, "small_key.pem"), "1024 bits"},
		{"EC", readTestdata(t, "ec_key.pem"), "ECDSA"},
		{"corrupt", corrupt, "does not parse"},
		{"encrypted", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), "encrypted"},
		{"EC PRIVATE KEY", []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), "RSA"},
		{"PKCS#8 in a PKCS#1 block", bytes.ReplaceAll(pkcs8, []byte("PRIVATE KEY"), []byte("RSA PRIVATE KEY")), "does not parse"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.pem)
			if k != nil {
				t.Fatal("a key came with the error")
			}
			errorContains(t, err, tt.want)
			for _, l := range append(pemBody(tt.pem), pemBody(pkcs8)...) {
				if len(l) >= 8 && strings.Contains(err.Error(), l[:8]) {
					t.Fatalf("error %q repeats key material", err)
				}
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	f := fx(t)
	small, err := x509.ParsePKCS8PrivateKey(mustBlock(t, readTestdata(t, "small_key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	smallPKIX, _ := x509.MarshalPKIXPublicKey(&small.(*rsa.PrivateKey).PublicKey)
	ecPriv, _ := x509.ParsePKCS8PrivateKey(mustBlock(t, readTestdata(t, "ec_key.pem")))
	ecPKIX, _ := x509.MarshalPKIXPublicKey(ecPriv.(crypto.Signer).Public())

	tests := []struct {
		name string
		pem  []byte
		want *rsa.PublicKey
		err  string
	}{
		{"PKIX PUBLIC KEY", readTestdata(t, "wechat_pubkey.pem"), &f.wechatKey.PublicKey, ""},
		{"PKCS#1 RSA PUBLIC KEY", readTestdata(t, "wechat_pubkey_pkcs1.pem"), &f.wechatKey.PublicKey, ""},
		{"CERTIFICATE", readTestdata(t, "platform_cert.pem"), &f.platformKey.PublicKey, ""},
		{"private key only", readTestdata(t, "merchant_key.pem"), nil, "found PRIVATE KEY"},
		{"nothing", []byte("PUB_KEY_ID_0114"), nil, "no PEM block"},
		{"1024 bits", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: smallPKIX}), nil, "1024 bits"},
		{"EC", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPKIX}), nil, "ECDSA"},
		{"garbage", []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), nil, "does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePublicKey(tt.pem)
			if tt.err != "" {
				errorContains(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !k.Equal(tt.want) {
				t.Fatal("wrong key")
			}
		})
	}
}

func mustBlock(t testing.TB, b []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}

func TestParseCertificates(t *testing.T) {
	f := fx(t)
	a, b, old := readTestdata(t, "platform_cert.pem"), readTestdata(t, "platform2_cert.pem"), readTestdata(t, "platform_old_cert.pem")
	bundle := bytes.Join([][]byte{a, b, old}, nil)
	certs, err := ParseCertificates(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 || !certs[0].Equal(f.platformCert) || !certs[1].Equal(f.platform2) || !certs[2].Equal(f.oldCert) {
		t.Fatalf("bundle read as %d certificates, not a, b, old in order", len(certs))
	}
	// EncodeCertificates writes what ParseCertificates reads.
	again, err := ParseCertificates(EncodeCertificates(certs))
	if err != nil || len(again) != 3 || !again[2].Equal(f.oldCert) {
		t.Fatalf("round trip: %v", err)
	}
	// ParseCertificate takes the first.
	first, err := ParseCertificate(bundle)
	if err != nil || !first.Equal(f.platformCert) {
		t.Fatalf("ParseCertificate = %v", err)
	}

	for _, tt := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"empty", nil, "no CERTIFICATE"},
		{"whitespace", []byte("\n \n"), "no CERTIFICATE"},
		{"a key in the bundle", bytes.Join([][]byte{a, readTestdata(t, "wechat_pubkey.pem")}, nil), `block 2 is "PUBLIC KEY"`},
		{"trailing junk", append(append([]byte{}, a...), "junk"...), "not PEM"},
		{"broken certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "certificate 1 does not parse"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCertificates(tt.pem)
			errorContains(t, err, tt.want)
		})
	}
	if _, err := ParseCertificate(readTestdata(t, "wechat_pubkey.pem")); err == nil {
		t.Fatal("ParseCertificate accepted a public key")
	}
}

// The serials in vectors.json were printed by Python (format(serial, "X"))
// and, for the merchant certificate, checked against `openssl x509 -serial`.
func TestCertificateSerial(t *testing.T) {
	f := fx(t)
	for _, tt := range []struct {
		name string
		cert *x509.Certificate
	}{
		{"merchant", f.merchantCert}, {"platform", f.platformCert}, {"platform2", f.platform2},
		{"platform_old", f.oldCert}, {"rogue", f.rogueCert},
	} {
		if got, want := CertificateSerial(tt.cert), f.v.Serials[tt.name]; got != want {
			t.Errorf("%s: serial %s, want %s", tt.name, got, want)
		}
	}
	// openssl pads to whole bytes; WeChat's serials (and ours) do not.
	if padded := f.v.Serials["platform_old_openssl"]; padded != "0"+CertificateSerial(f.oldCert) {
		t.Errorf("openssl serial %s, ours %s", padded, CertificateSerial(f.oldCert))
	}
	if CertificateSerial(nil) != "" {
		t.Error("serial of nil")
	}
}

func TestCheckPublicKeyID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want string // "" when valid
	}{
		{"PUB_KEY_ID_0119000091912025010100000000000001", ""},
		{"PUB_KEY_ID_011400000000000000000000000000", ""}, // 30 digits: lengths are not checked
		{"PUB_KEY_ID_1", ""},
		{"PUB_KEY_ID_" + strings.Repeat("9", 100), ""},
		{"0119000091912025010100000000000001", "does not start with PUB_KEY_ID_"},
		{"pub_key_id_0114", "does not start with"},
		{"", "does not start with"},
		{"PUB_KEY_ID_", "only the prefix"},
		{" PUB_KEY_ID_0114", "does not start with"},
		{"PUB_KEY_ID_0114\n", "control character"},
		{"PUB_KEY_ID_01 14", "space"},
	} {
		err := CheckPublicKeyID(tt.id)
		if tt.want == "" {
			if err != nil {
				t.Errorf("CheckPublicKeyID(%q) = %v", tt.id, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckPublicKeyID(%q) = %v, want an error with %q", tt.id, err, tt.want)
		}
	}
}

func TestAPIv3KeyRedacted(t *testing.T) {
	const secret = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
	k := APIv3Key(secret)
	type config struct {
		Key  APIv3Key
		Keys []APIv3Key
	}
	var outs []string
	for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, k), fmt.Sprintf(verb, config{k, []APIv3Key{k}}), fmt.Sprintf(verb, &config{Key: k}))
	}
	j, err := json.Marshal(config{k, []APIv3Key{k}})
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("m", "key", k, "cfg", config{Key: k})
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("m", "key", k, "cfg", config{Key: k})
	outs = append(outs, logs.String())
	for _, o := range outs {
		if strings.Contains(o, secret) || strings.Contains(o, fmt.Sprintf("%x", secret)) || strings.Contains(o, fmt.Sprintf("%X", secret)) {
			t.Fatalf("the key shows in %q", o)
		}
	}
	if k.String() != "[REDACTED]" || k.GoString() != "wxpayv3.APIv3Key([REDACTED])" {
		t.Fatalf("String %q GoString %q", k.String(), k.GoString())
	}
	if string(j) != `{"Key":"[REDACTED]","Keys":["[REDACTED]"]}` {
		t.Fatalf("JSON %s", j)
	}
}

func TestAPIv3KeyValidate(t *testing.T) {
	for _, tt := range []struct {
		key  string
		want string
	}{
		{"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb", ""},
		{strings.Repeat("\xff", 32), ""}, // bytes, not characters
		{"", "empty"},
		{"testAPIv3Key0000", "16 bytes"},
		{"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb ", "33 bytes"},
	} {
		err := APIv3Key(tt.key).Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("Validate(%d bytes) = %v", len(tt.key), err)
			}
			continue
		}
		errorContains(t, err, tt.want)
		if tt.key != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.key)) {
			t.Errorf("error %q shows the key", err)
		}
	}
}
