package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPayDirectory(t *testing.T) {
	for dir, ok := range map[string]bool{
		"https://shop.example.com/pay/":      true,
		"https://shop.example.com/":          true,
		"https://shop.example.com/pay":       false, // WeChat registers directories
		"http://shop.example.com/pay/":       false,
		"https://shop.example.com/pay/?a=1":  false,
		"https://shop.example.com/pay/#frag": false,
		"shop.example.com/pay/":              false,
		"":                                   false,
	} {
		if err := checkPayDirectory(dir); (err == nil) != ok {
			t.Errorf("checkPayDirectory(%q) = %v, want ok %v", dir, err, ok)
		}
	}
}

func TestHostMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, host string
		want          bool
	}{
		{"pay.example.com", "pay.example.com", true},
		{"*.example.com", "pay.example.com", true},
		{"*.example.com", "a.pay.example.com", false},
		{"*.example.com", "example.com", false},
		{"pay.example.com", "shop.example.com", false},
	} {
		if got := hostMatches(c.pattern, c.host); got != c.want {
			t.Errorf("hostMatches(%q, %q) = %v", c.pattern, c.host, got)
		}
	}
}

func TestLoadMPVerify(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if f, err := loadMPVerify(write("MP_verify_X1.txt", " tok \n")); err != nil || f.path != "/MP_verify_X1.txt" || string(f.content) != "tok" {
		t.Fatalf("%+v, %v", f, err)
	}
	for _, c := range []struct{ file, says string }{
		{write("verify.txt", "tok"), "MP_verify_<letters and digits>.txt"},
		{write("MP_verify_..txt", "tok"), "MP_verify_<letters and digits>.txt"},
		{write("MP_verify_Empty.txt", "  "), "short token"},
		{filepath.Join(dir, "MP_verify_Missing.txt"), "no such file"},
	} {
		if _, err := loadMPVerify(c.file); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("loadMPVerify(%s) = %v, want it to say %q", filepath.Base(c.file), err, c.says)
		}
	}
}
