package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Parse errors name what was wrong (the forms that parse are in
// testdata/caddyfile_adapt, see TestCaddyfileAdapt).
func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, input, says string
	}{
		{"unknown option", "wxpay {\n\tbogus 1\n}", `unknown wxpay option "bogus"`},
		{"unknown merchant option", "wxpay {\n\tmerchant {\n\t\tmchid 1\n\t}\n}", `unknown merchant option "mchid"`},
		{"duplicate merchant", "wxpay {\n\tmerchant a {\n\t}\n\tmerchant a {\n\t}\n}", "defined twice"},
		{"upstream without url", "wxpay {\n\tupstream {\n\t}\n}", "needs a URL"},
		{"bad duration", "wxpay {\n\tmerchant {\n\t\ttimeout soon\n\t}\n}", "bad duration"},
		{"bad concurrency", "wxpay {\n\tupstream http://x {\n\t\tconcurrency 0\n\t}\n}", "concurrency"},
		{"bad ack", "wxpay {\n\tack never\n}", "ack must be stored or upstream"},
		{"storage without driver", "wxpay {\n\tstorage\n}", "storage needs a driver"},
		{"storage bogus driver", "wxpay {\n\tstorage mysql x\n}", `storage driver "mysql" is not supported (sqlite, postgres)`},
		{"postgres without dsn", "wxpay {\n\tstorage postgres\n}", "storage postgres needs a connection string"},
		{"postgres bad max_conns", "wxpay {\n\tstorage postgres x {\n\t\tmax_conns 0\n\t}\n}", "max_conns \"0\": want a positive number"},
		{"postgres unknown option", "wxpay {\n\tstorage postgres x {\n\t\tpool 3\n\t}\n}", `unknown storage postgres option "pool"`},
		{"postgres unquoted key=value", "wxpay {\n\tstorage postgres host=db password=s3cretpw dbname=wxpay\n}", "storage postgres takes one connection string"},
		{"sqlite block", "wxpay {\n\tstorage sqlite x {\n\t\tmax_conns 3\n\t}\n}", "storage sqlite takes no block"},
		{"app_ids", "wxpay {\n\tmerchant {\n\t\tapp_ids wx1\n\t}\n}", "use app_id <app_id>"},
		{"reconcile on", "wxpay {\n\treconcile on\n}", "reconcile takes off or a block"},
		{"close_expired yes", "wxpay {\n\treconcile {\n\t\tclose_expired yes\n\t}\n}", "close_expired on|off"},
		{"client_cert three files", "wxpay {\n\tmerchant {\n\t\tclient_cert a b c\n\t}\n}", "client_cert <cert.pem> <key.pem>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want it to say %q", err, tt.says)
			}
			if strings.Contains(err.Error(), "s3cretpw") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	for _, in := range []string{"wxpay a b", "wxpay {\n\tbogus\n}"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("handler accepted %q", in)
		}
	}
}
