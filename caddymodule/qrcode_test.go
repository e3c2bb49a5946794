package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/wxpaysim"
)

// getWithToken GETs path from the gateway with the API token.
func (g *gateway) getWithToken(path string) (int, http.Header, []byte) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// The QR code of a NATIVE order decodes (zbarimg, outside the code under
// test) to the order's code_url, at the size asked; an order without one,
// an unknown one, a paid one and a bad size are refused with their codes.
func TestNativeQRCode(t *testing.T) {
	zbarimg := requireTool(t, "zbarimg")
	g := startGateway(t, gatewayOptions{})
	status, out := g.post("/wxpay/orders", testToken, map[string]any{
		"out_trade_no": "qr1", "total_fee": 1, "body": "b", "trade_type": "NATIVE", "product_id": "p1"})
	codeURL, _ := out["code_url"].(string)
	if status != 200 || !strings.HasPrefix(codeURL, "weixin://") {
		t.Fatalf("place: %d %v", status, out)
	}
	for _, size := range []int{0, 128, 600} {
		path := "/wxpay/orders/qr1/qrcode.png"
		want := 256
		if size > 0 {
			path += "?size=" + strconv.Itoa(size)
			want = size
		}
		status, h, body := g.getWithToken(path)
		if status != 200 || h.Get("Content-Type") != "image/png" || !strings.Contains(h.Get("Cache-Control"), "no-store") {
			t.Fatalf("%s: %d %v %.200s", path, status, h, body)
		}
		img, err := png.Decode(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if b := img.Bounds(); b.Dx() != want || b.Dy() != want {
			t.Fatalf("%s: %v, want %d×%d", path, b, want, want)
		}
		file := filepath.Join(t.TempDir(), "qr.png")
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(zbarimg, "--raw", "-q", file).Output()
		if err != nil {
			t.Fatalf("zbarimg %s: %v", path, err)
		}
		if strings.TrimSpace(string(got)) != codeURL {
			t.Fatalf("%s decodes to %q, want %q", path, got, codeURL)
		}
	}

	status, out = g.post("/wxpay/orders", testToken, map[string]any{"out_trade_no": "qr2", "total_fee": 1, "body": "b", "trade_type": "APP"})
	if status != 200 {
		t.Fatalf("place: %d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
		t.Fatal(err)
	}
	status, out = g.post("/wxpay/orders", testToken, map[string]any{
		"out_trade_no": "qr3", "total_fee": 1, "body": "b", "trade_type": "NATIVE", "product_id": "p3"})
	if status != 200 {
		t.Fatalf("place: %d %v", status, out)
	}
	if _, err := g.sim.Pay(context.Background(), wxpaysim.PayOptions{PrepayID: out["prepay_id"].(string)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the payment recorded", 5*time.Second, func() bool { return acked(g.sim, "qr3") })
	for _, c := range []struct {
		path   string
		status int
		code   string
	}{
		{"/wxpay/orders/qr1/qrcode.png?size=10", 400, "INVALID_REQUEST"},
		{"/wxpay/orders/qr1/qrcode.png?size=big", 400, "INVALID_REQUEST"},
		{"/wxpay/orders/nosuch/qrcode.png", 404, "ORDERNOTEXIST"},
		{"/wxpay/orders/qr2/qrcode.png", 404, "NO_CODE_URL"},
		{"/wxpay/orders/qr3/qrcode.png", 409, "ORDERPAID"},
	} {
		status, _, body := g.getWithToken(c.path)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if status != c.status || e.Error.Code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.path, status, body, c.status, c.code)
		}
	}
	// The token is required, as on every order route.
	resp, err := http.Get(g.base + "/wxpay/orders/qr1/qrcode.png")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", resp.StatusCode)
	}
}
