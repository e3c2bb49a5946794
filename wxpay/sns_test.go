package wxpay_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

func TestCode2Session(t *testing.T) {
	const app, secret = "wxd930ea5d5a258f4f", "appsecretofthetestminiprogram0a1"
	sim := wxpaysim.New(wxpaysim.Config{AppSecrets: map[string]string{app: secret}})
	srv := httptest.NewServer(sim)
	defer func() { sim.Close(); srv.Close() }()
	c := &wxpay.SNSClient{Endpoint: srv.URL}
	ctx := context.Background()
	s, err := c.Code2Session(ctx, app, secret, "alice.1")
	if err != nil || s.OpenID != wxpaysim.OpenIDFor(app, "alice") {
		t.Fatalf("Code2Session = %+v, %v", s, err)
	}
	for _, tc := range []struct {
		name, app, secret, code string
		errcode                 int
	}{
		{"a code used already", app, secret, "alice.1", 40163},
		{"an invalid code", app, secret, "invalid-1", 40029},
		{"a wrong secret", app, "wrongsecretwrongsecretwrongsecre", "alice.2", 40125},
		{"an unknown app", "wx0000000000000000", secret, "alice.3", 40013},
	} {
		_, err := c.Code2Session(ctx, tc.app, wxpay.AppSecret(tc.secret), tc.code)
		var se *wxpay.SNSError
		if !errors.As(err, &se) || se.Code != tc.errcode {
			t.Errorf("%s: %v, want errcode %d", tc.name, err, tc.errcode)
		}
	}
	// A transport failure does not show the request's URL, whose query
	// holds the secret.
	down := &wxpay.SNSClient{Endpoint: "http://127.0.0.1:1"}
	_, err = down.Code2Session(ctx, app, secret, "alice.4")
	var te *wxpay.TransportError
	if !errors.As(err, &te) || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "js_code") {
		t.Fatalf("transport error %v", err)
	}
	if s := wxpay.AppSecret(secret).String(); strings.Contains(s, secret) {
		t.Fatal("an AppSecret prints itself")
	}
}
