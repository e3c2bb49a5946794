package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestGlobalOptionParses(t *testing.T) {
	d := caddyfile.NewTestDispenser(`wxpay {
		merchant shop {
			mch_id      {env.MCH}
			app_id      wx1 wx2
			app_id      wx3
			api_key     {file./run/key}
			sign_type   HMAC-SHA256
			notify_url  https://pay.example.com/wxpay/notify
			insecure_notify_url
			endpoint    http://127.0.0.1:9
			timeout     2s
		}
		upstream http://127.0.0.1:8080/events {
			secret             {env.SECRET}
			timeout            3s
			retry_max_age      24h
			retry_max_interval 1m
			concurrency        4
		}
		api_token {env.TOKEN}
		storage sqlite /var/lib/wxpay/ledger.db
		ack stored
	}`)
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	m := a.Merchants["shop"]
	want := &App{
		Merchants: map[string]*Merchant{"shop": {
			MchID: "{env.MCH}", AppIDs: []string{"wx1", "wx2", "wx3"}, APIKey: "{file./run/key}", SignType: "HMAC-SHA256",
			NotifyURL: "https://pay.example.com/wxpay/notify", InsecureNotifyURL: true, Endpoint: "http://127.0.0.1:9",
			Timeout: caddy.Duration(2 * time.Second),
		}},
		Upstream: &Upstream{URL: "http://127.0.0.1:8080/events", Secret: "{env.SECRET}", Timeout: caddy.Duration(3 * time.Second),
			RetryMaxAge: caddy.Duration(24 * time.Hour), RetryMaxInterval: caddy.Duration(time.Minute), Concurrency: 4},
		APIToken: "{env.TOKEN}",
		Storage:  &Storage{Driver: "sqlite", Path: "/var/lib/wxpay/ledger.db"},
		Ack:      "stored",
	}
	got, _ := json.Marshal(&a)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) || m == nil {
		t.Fatalf("parsed\n%s\nwant\n%s", got, exp)
	}
}

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want it to say %q", err, tt.says)
			}
		})
	}
	for _, in := range []string{"wxpay a b", "wxpay {\n\tbogus\n}"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("handler accepted %q", in)
		}
	}
	var s Simulator
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser("wxpay_simulator {\n\ttime_scale -1\n}")); err == nil {
		t.Error("simulator accepted a negative time_scale")
	}
}
