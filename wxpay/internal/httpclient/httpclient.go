// Package httpclient builds the HTTP client both WeChat Pay protocol
// libraries (wxpay, API v2; wxpayv3, APIv3) call WeChat with.
package httpclient

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// New returns an HTTP client for calls to WeChat sized for maxConcurrent
// concurrent calls: Go's default transport keeps 2 idle connections per
// host, which makes a busy gateway open a new TLS connection for most
// calls. It trusts the system's root certificates and never follows a
// redirect: WeChat's API never redirects, and following one would send a
// signed request somewhere else.
func New(maxConcurrent int) *http.Client {
	if maxConcurrent < 2 {
		maxConcurrent = 2
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			MaxIdleConns:          4 * maxConcurrent,
			MaxIdleConnsPerHost:   maxConcurrent,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
