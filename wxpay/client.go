package wxpay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultEndpoint is WeChat Pay's API host.
const DefaultEndpoint = "https://api.mch.weixin.qq.com"

// MaxReplySize bounds what the client reads of an answer.
const MaxReplySize = 1 << 20

// Client calls WeChat Pay's API v2 on behalf of one merchant. It is safe
// for concurrent use. The zero value is not usable: set MchID and Key.
type Client struct {
	// MchID is the merchant number (商户号).
	MchID string
	// Key is the merchant's API v2 key.
	Key APIKey
	// SignType signs requests; MD5 when empty.
	SignType SignType
	// Endpoint is the API's base URL; DefaultEndpoint when empty.
	Endpoint string
	// HTTPClient sends the requests; a client from NewHTTPClient when nil.
	HTTPClient *http.Client
	// Timeout bounds each call, on top of the context's own deadline.
	// Zero means only the context bounds it.
	Timeout time.Duration

	once        sync.Once
	defaultHTTP *http.Client
}

// NewHTTPClient returns an HTTP client for calls to WeChat sized for
// maxConcurrent concurrent calls: Go's default transport keeps 2 idle
// connections per host, which makes a busy gateway open a new TLS
// connection for most calls. It trusts the system's root certificates.
func NewHTTPClient(maxConcurrent int) *http.Client {
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
		// WeChat's API never redirects; following one would send a
		// signed request somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// NonceStr returns a random nonce_str from crypto/rand: 26 characters of
// base32, within WeChat's 32.
func NonceStr() string { return rand.Text() }

func (c *Client) signType() SignType {
	if c.SignType == "" {
		return SignTypeMD5
	}
	return c.SignType
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimSuffix(c.Endpoint, "/")
}

// Call signs req (adding mch_id, nonce_str and, for HMAC-SHA256, sign_type),
// posts it to path, and returns WeChat's answer once its return_code and
// result_code are SUCCESS and its signature verifies. op names the call in
// errors. A failure is an *APIError, a *TransportError or a *ResponseError.
func (c *Client) Call(ctx context.Context, op, path string, req Params) (Params, error) {
	st := c.signType()
	req = req.Clone()
	req.Set("mch_id", c.MchID)
	if _, ok := req.Lookup("nonce_str"); !ok {
		req.Set("nonce_str", NonceStr())
	}
	// The client's sign type decides, whatever the caller put in req.
	req.Delete("sign_type")
	if st != SignTypeMD5 {
		req.Set("sign_type", string(st))
	}
	req.Delete("sign")
	sign, err := Sign(req, c.Key, st)
	if err != nil {
		return nil, fmt.Errorf("wxpay %s: %w", op, err)
	}
	req = append(req, Param{Name: "sign", Value: sign})
	body, err := EncodeXML(req)
	if err != nil {
		return nil, fmt.Errorf("wxpay %s: %w", op, err)
	}

	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint()+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("wxpay %s: %w", op, err)
	}
	httpReq.Header.Set("Content-Type", "text/xml; charset=utf-8")
	httpReq.Header.Set("Accept", "text/xml")
	resp, err := c.httpClient().Do(httpReq)
	if err != nil {
		return nil, &TransportError{Op: op, Err: err}
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, MaxReplySize+1))
	if err != nil {
		return nil, &TransportError{Op: op, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &TransportError{Op: op, StatusCode: resp.StatusCode, Err: fmt.Errorf("HTTP status %d", resp.StatusCode)}
	}
	if len(reply) > MaxReplySize {
		return nil, &ResponseError{Op: op, Err: fmt.Errorf("larger than %d bytes", MaxReplySize)}
	}
	return c.checkReply(op, reply, st)
}

// checkReply decodes and checks an answer: return_code, signature, merchant,
// then result_code.
func (c *Client) checkReply(op string, reply []byte, st SignType) (Params, error) {
	p, err := DecodeXML(reply)
	if err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	if rc := p.Get("return_code"); rc != "SUCCESS" {
		// WeChat does not sign a refusal; there is nothing to verify.
		return nil, &APIError{Op: op, ReturnCode: rc, ReturnMsg: p.Get("return_msg")}
	}
	replyType := st
	if named := p.Get("sign_type"); named != "" {
		if replyType, err = ParseSignType(named); err != nil {
			return nil, &ResponseError{Op: op, Err: err}
		}
	}
	if err := Verify(p, c.Key, replyType); err != nil {
		return nil, &ResponseError{Op: op, Err: err}
	}
	if mch := p.Get("mch_id"); mch != "" && mch != c.MchID {
		return nil, &ResponseError{Op: op, Err: fmt.Errorf("answer is for mch_id %q, not %q", mch, c.MchID)}
	}
	if p.Get("result_code") != "SUCCESS" {
		return nil, &APIError{
			Op: op, ReturnCode: "SUCCESS", ResultCode: p.Get("result_code"),
			ErrCode: p.Get("err_code"), ErrCodeDes: p.Get("err_code_des"),
		}
	}
	return p, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	c.once.Do(func() { c.defaultHTTP = NewHTTPClient(64) })
	return c.defaultHTTP
}

// IsTimeout reports whether err is WeChat not answering in time.
func IsTimeout(err error) bool {
	var te *TransportError
	return errors.As(err, &te) && te.Timeout()
}
