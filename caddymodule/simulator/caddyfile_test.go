package simulator

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Parse errors of the wxpay_simulator directive name what was wrong (the
// forms that parse are in caddymodule's testdata/caddyfile_adapt).
func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, input, says string
	}{
		{"negative time_scale", "wxpay_simulator {\n\ttime_scale -1\n}", "time_scale must be a positive number"},
		{"time_scale not a number", "wxpay_simulator {\n\ttime_scale fast\n}", "time_scale must be a positive number"},
		{"merchant without app id", "wxpay_simulator {\n\tmerchant 10000100 key\n}", "merchant needs <mch_id> <api_key> <app_id>"},
		{"unknown option", "wxpay_simulator {\n\tclientca ca.pem\n}", `unknown wxpay_simulator option "clientca"`},
		{"an argument", "wxpay_simulator now", "wrong argument count"},
		{"shop without a URL", "wxpay_simulator {\n\tshop\n}", "wrong argument count"},
		{"cashier_url with two", "wxpay_simulator {\n\tcashier_url a b\n}", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Simulator
			err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want it to say %q", err, tt.says)
			}
		})
	}
}
