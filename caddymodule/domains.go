package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Where WeChat Pay fails first in production: the domains. WeChat calls
// notify_url and refund_notify_url only on https with a certificate it
// trusts; JSAPI payments work only from pages under a pay directory
// (支付授权目录) registered on the merchant platform; official-account
// pages need the domain verified with WeChat's MP_verify_*.txt file. The
// gateway serves that file (mp_verify) and checks at start that the hosts
// it is told of are sites this Caddy serves with automatic HTTPS.

// siteUse is a URL of a merchant's whose host must be one of this Caddy's
// sites with automatic HTTPS.
type siteUse struct {
	what string // the option, for the warning
	url  string
	page bool // a payer's page (a pay directory), not a callback of WeChat's
}

// checkPayDirectory checks a pay directory as WeChat registers them: an
// https URL of a directory, ending in /, without query or fragment.
func checkPayDirectory(dir string) error {
	u, err := url.Parse(dir)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || !strings.HasSuffix(u.Path, "/") {
		return fmt.Errorf("pay_directory %q: want the https URL of a directory, ending in / (as registered under 支付授权目录), e.g. https://shop.example.com/pay/", dir)
	}
	return nil
}

// checkSites logs a warning for each URL of rts whose host this Caddy does
// not serve as a site with automatic HTTPS: no route of a TLS server
// matches the host, or its server has automatic HTTPS off.
func checkSites(ctx caddy.Context, logger *zap.Logger, rts []*merchantRuntime) {
	var uses int
	for _, rt := range rts {
		uses += len(rt.sites)
	}
	if uses == 0 {
		return
	}
	appIface, err := ctx.AppIfConfigured("http")
	if err != nil {
		logger.Warn("no http app: cannot check that notify_url and the pay directories are sites of this Caddy", zap.Error(err))
		return
	}
	app, ok := appIface.(*caddyhttp.App)
	if !ok {
		return
	}
	for _, rt := range rts {
		for _, use := range rt.sites {
			u, err := url.Parse(use.url)
			if err != nil {
				continue
			}
			host := strings.ToLower(u.Hostname())
			tls, plain := servedBy(app, host)
			var problem string
			switch {
			case tls:
				continue
			case plain:
				problem = "is a site of this Caddy, but not over automatic HTTPS"
			default:
				problem = "is not a site of this Caddy (no site address or host matcher names it)"
			}
			consequence := "WeChat will not reach it, and every notification will be missed until reconciliation finds the payment"
			if use.page {
				consequence = "JSAPI payments from pages there fail in the payer's WeChat unless another server serves them over https"
			}
			logger.Warn(fmt.Sprintf("%s: host %s %s: %s", use.what, host, problem, consequence),
				zap.String("merchant", rt.merchant), zap.String("host", host))
		}
	}
}

// servedBy reports whether a server of app routes host over TLS with
// automatic HTTPS (tls), or only otherwise (plain).
func servedBy(app *caddyhttp.App, host string) (tls, plain bool) {
	for _, srv := range app.Servers {
		if !serverMatchesHost(srv, host) {
			continue
		}
		auto := srv.AutoHTTPS == nil || !srv.AutoHTTPS.Disabled
		skipped := srv.AutoHTTPS != nil && (contains(srv.AutoHTTPS.Skip, host) || contains(srv.AutoHTTPS.SkipCerts, host))
		if len(srv.TLSConnPolicies) > 0 && auto && !skipped {
			return true, false
		}
		plain = true
	}
	return false, plain
}

// serverMatchesHost reports whether a route of srv (or a route of a
// subroute, as Caddyfile sites are) has a host matcher naming host.
func serverMatchesHost(srv *caddyhttp.Server, host string) bool {
	for _, route := range srv.Routes {
		for _, set := range route.MatcherSets {
			for _, m := range set {
				if hm, ok := m.(*caddyhttp.MatchHost); ok {
					for _, h := range *hm {
						if hostMatches(strings.ToLower(h), host) {
							return true
						}
					}
				}
			}
		}
	}
	return false
}

// hostMatches matches host against a host matcher's pattern: the same
// name, or a wildcard of one label (*.example.com).
func hostMatches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		if i := strings.IndexByte(host, '.'); i > 0 {
			return host[i+1:] == rest
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// mpVerifyName is the name WeChat gives its domain-verification files.
var mpVerifyName = regexp.MustCompile(`^MP_verify_[A-Za-z0-9]{1,64}\.txt$`)

// mpVerifyFile is WeChat's domain-verification file, read once.
type mpVerifyFile struct {
	path    string // /MP_verify_….txt
	content []byte
}

// loadMPVerify reads the MP_verify_*.txt file WeChat issued for the
// domain (公众号设置 → 功能设置: JS接口安全域名, 网页授权域名).
func loadMPVerify(file string) (*mpVerifyFile, error) {
	name := filepath.Base(file)
	if !mpVerifyName.MatchString(name) {
		return nil, fmt.Errorf("mp_verify %q: WeChat's file is named MP_verify_<letters and digits>.txt; keep its name", file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("mp_verify: %w", err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) == 0 || len(b) > 256 {
		return nil, fmt.Errorf("mp_verify %q: %d bytes; WeChat's file holds a short token", file, len(b))
	}
	return &mpVerifyFile{path: "/" + name, content: b}, nil
}

// serve answers GET and HEAD of the file's path; ok false for any other
// path.
func (f *mpVerifyFile) serve(w http.ResponseWriter, r *http.Request) (ok bool) {
	if f == nil || r.URL.Path != f.path {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return true
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(f.content)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(f.content)
	}
	return true
}
