package gateway

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// HTTPNotify says when a URL WeChat notifies may be plain http rather than
// https. WeChat itself only calls https URLs (on port 443); http is for
// tests and demos against a simulator.
type HTTPNotify int

const (
	// HTTPNotifyNever: https only (production).
	HTTPNotifyNever HTTPNotify = iota
	// HTTPNotifyLoopback: http too, on a loopback host.
	HTTPNotifyLoopback
	// HTTPNotifyAny: http too, anywhere (the merchant's endpoint is a
	// simulator, not WeChat).
	HTTPNotifyAny
)

// CheckNotifyURL checks a URL WeChat is to notify (field names it in the
// error): absolute, without a query string (WeChat drops it), and https
// unless policy allows http.
func CheckNotifyURL(field, raw string, policy HTTPNotify) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return fmt.Errorf("%s is required", field)
	case err != nil || u.Host == "" || !u.IsAbs():
		return fmt.Errorf("%s %q is not an absolute URL", field, raw)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%s %q has a query string, which WeChat drops", field, raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("%s %q must be https", field, raw)
	case policy == HTTPNotifyAny, policy == HTTPNotifyLoopback && IsLoopback(u.Hostname()):
		return nil
	case policy == HTTPNotifyNever:
		return fmt.Errorf("%s %q must be https (insecure_notify_url allows http on a loopback address or with a simulator endpoint)", field, raw)
	}
	return fmt.Errorf("%s %q: insecure_notify_url allows http only on a loopback address or with a simulator endpoint", field, raw)
}

// IsLoopback reports whether host names this machine: localhost (any
// case, with or without the root's trailing dot) or a loopback address.
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
