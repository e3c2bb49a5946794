package caddymodule_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// Each file of testdata/caddyfile_adapt holds a Caddyfile, a line of ten
// dashes, and the JSON it must adapt to, as Caddy's own adapt tests do:
// one file per syntax form of the wxpay global option and of the wxpay,
// wxpay_checkout and wxpay_simulator directives (and their order among
// Caddy's). Placeholders stay in the JSON: they are resolved when the
// config loads, not when it adapts.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatal("no ---------- line between the Caddyfile and its JSON")
			}
			if !caddytest.CompareAdapt(t, file, strings.TrimSpace(caddyfile)+"\n", "caddyfile", strings.TrimSpace(expected)) {
				t.Error("the Caddyfile does not adapt to the JSON of the file")
			}
		})
	}
}
