package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpayv3"
)

// mch_serial is taken as the merchant platform shows it and as openssl
// prints it (serial=…, padded to whole bytes), and refused when it is not
// a serial at all, instead of signing every request with a wrong one.
func TestMerchantSerialForms(t *testing.T) {
	pem, err := PEMOrFile("private_key", "../demo/v3/apiclient_key.pem", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	key, err := wxpayv3.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	// The demo certificate's serial, from
	//   openssl x509 -in demo/v3/apiclient_cert.pem -noout -serial
	const openssl = "serial=5B6580FA62F45492AF3527FB9B8DCAC26BD6B458"
	const want = "5B6580FA62F45492AF3527FB9B8DCAC26BD6B458"
	for _, tc := range []struct {
		serial, cert, want, err string
	}{
		{serial: want, want: want},
		{serial: strings.ToLower(want), want: want},
		{serial: openssl, want: want},
		{serial: "  " + openssl + " ", want: want},
		{serial: openssl, cert: "../demo/v3/apiclient_cert.pem", want: want},
		{serial: "SERIAL=" + want, cert: "../demo/v3/apiclient_cert.pem", want: want},
		{serial: "serial:" + want, err: "is not a certificate serial"},
		{serial: "5B65 80FA", err: "is not a certificate serial"},
		{serial: "serial=", err: "mch_serial (the serial of apiclient_cert.pem) or merchant_cert is required"},
	} {
		cfg := &Merchant{MchSerial: tc.serial, MerchantCert: tc.cert}
		got, err := cfg.merchantSerial(caddy.NewReplacer(), key)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("mch_serial %q: %q, %v; want an error with %q", tc.serial, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("mch_serial %q (merchant_cert %q): %q, %v; want %q", tc.serial, tc.cert, got, err, tc.want)
		}
	}
}
