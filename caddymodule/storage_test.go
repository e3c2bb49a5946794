package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// Where the ledger lives, as configured: errors that name the mistake, and
// a PostgreSQL location that logs and errors can show without the
// password.
func TestStorageLocation(t *testing.T) {
	t.Setenv("WXPAY_TEST_DSN", "postgres://wxpay:pa55-w0rd-here@db.internal:6543/payments?sslmode=verify-full")
	t.Setenv("WXPAY_TEST_EMPTY", "")
	tests := []struct {
		name    string
		st      Storage
		display string // String() of the location
		says    string // the error, when it fails
	}{
		{"postgres from the environment", Storage{Driver: "postgres", DSN: "{env.WXPAY_TEST_DSN}"}, "postgres:postgres://wxpay@db.internal:6543/payments", ""},
		{"postgres env unset", Storage{Driver: "postgres", DSN: "{env.WXPAY_TEST_EMPTY}"}, "", "is empty once its placeholders are resolved"},
		{"postgres no dsn", Storage{Driver: "postgres"}, "", "no connection string"},
		{"postgres bad dsn", Storage{Driver: "postgres", DSN: "postgres://u:pa55-w0rd-here@[::1"}, "", "storage postgres: the connection string cannot be read"},
		{"postgres bad key=value dsn", Storage{Driver: "postgres", DSN: "host=db password = pa55-w0rd-here port=x"}, "", "storage postgres: the connection string cannot be read"},
		{"postgres with a path", Storage{Driver: "postgres", DSN: "postgres://h/db", Path: "/x.db"}, "", "path is SQLite's option"},
		{"sqlite with a dsn", Storage{Driver: "sqlite", DSN: "postgres://h/db"}, "", "are PostgreSQL's options"},
		{"unknown driver", Storage{Driver: "mysql"}, "", `storage driver "mysql" is not supported`},
	}
	repl := caddy.NewReplacer()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := tt.st.location(repl)
			if tt.says != "" {
				if err == nil || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("err = %v, want it to say %q", err, tt.says)
				}
				if strings.Contains(err.Error(), "pa55-w0rd-here") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := loc.String(); got != tt.display {
				t.Fatalf("String() = %q, want %q", got, tt.display)
			}
			if !strings.Contains(loc.key(), "pa55-w0rd-here") || !loc.shared() {
				t.Fatalf("the location lost its DSN or is not shared: %+v", loc)
			}
		})
	}
}
