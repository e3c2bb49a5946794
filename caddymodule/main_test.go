package caddymodule_test

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps Caddy's data and config (the default ledger, autosaved
// configs) in a temporary folder instead of the user's home.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddy-wxpay-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_DATA_HOME", dir+"/data")
	os.Setenv("XDG_CONFIG_HOME", dir+"/config")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
