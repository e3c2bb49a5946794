package wxpay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/internal/httpclient"
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
	// Timeout bounds each attempt of a call (a call that fails over makes
	// two), on top of the context's own deadline. For DownloadBill it
	// bounds the wait for WeChat's answer, then each stretch of the
	// download without a byte read (a large bill takes as long as it
	// takes while it flows). Zero means only the context bounds it.
	Timeout time.Duration
	// TLSHTTPClient sends /secapi/ calls with the merchant's client
	// certificate (see NewMTLSHTTPClient); Refund fails with a clear error
	// when nil.
	TLSHTTPClient *http.Client
	// FailoverEndpoint is the base URL tried once when a call that is safe
	// to repeat (orderquery, closeorder, refund, refundquery, downloadbill;
	// never unifiedorder) fails with a network error or an HTTP 5xx: WeChat's
	// disaster-recovery twin, see DefaultFailoverEndpoint. Empty disables
	// failover.
	FailoverEndpoint string
	// OnFailover, when set, is called each time a call fails over, with the
	// error of the first try, for logging and counting. It must be safe for
	// concurrent use.
	OnFailover func(op string, err error)

	once        sync.Once
	defaultHTTP *http.Client
}

// NewHTTPClient returns an HTTP client for calls to WeChat sized for
// maxConcurrent concurrent calls. It never follows redirects (following
// one would send a signed request elsewhere) and trusts the system's root
// certificates.
func NewHTTPClient(maxConcurrent int) *http.Client { return httpclient.New(maxConcurrent) }

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
// Call tries once and never fails over: it cannot know whether the request
// is safe to repeat.
func (c *Client) Call(ctx context.Context, op, path string, req Params) (Params, error) {
	sr, err := c.signRequest(op, path, req)
	if err != nil {
		return nil, err
	}
	return c.exchange(ctx, c.httpClient(), sr, callOnce)
}

// signedRequest is a request signed and encoded once, so that a retry sends
// the very same bytes (same nonce_str, same sign).
type signedRequest struct {
	op   string
	path string
	body []byte
	st   SignType // the sign type of the request, and so of the answer
}

// signRequest is the signing half of Call.
func (c *Client) signRequest(op, path string, req Params) (*signedRequest, error) {
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
	return &signedRequest{op: op, path: path, body: body, st: st}, nil
}

// post sends sr once to base with hc and returns the answer when its HTTP
// status is 200; any other outcome is a *TransportError. The caller closes
// the answer's body and then calls release, which ends the attempt's
// Timeout.
func (c *Client) post(ctx context.Context, hc *http.Client, base string, sr *signedRequest) (resp *http.Response, release func(), err error) {
	release = func() {}
	if c.Timeout > 0 {
		ctx, release = context.WithTimeout(ctx, c.Timeout)
	}
	return c.send(ctx, hc, base, sr, release)
}

// postStream is post for an answer read as a stream: its Timeout bounds
// the wait for the answer, then each stretch without progress (idle.Touch
// renews it).
func (c *Client) postStream(ctx context.Context, hc *http.Client, base string, sr *signedRequest) (resp *http.Response, release func(), idle *httpclient.IdleTimeout, err error) {
	ctx, idle = httpclient.WithIdleTimeout(ctx, c.Timeout)
	resp, release, err = c.send(ctx, hc, base, sr, idle.Release)
	return resp, release, idle, err
}

// send posts sr to base and checks the answer's status; release ends the
// attempt's timeout (called here on failure).
func (c *Client) send(ctx context.Context, hc *http.Client, base string, sr *signedRequest, release func()) (resp *http.Response, _ func(), err error) {
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+sr.path, bytes.NewReader(sr.body))
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("wxpay %s: %w", sr.op, err)
	}
	httpReq.Header.Set("Content-Type", "text/xml; charset=utf-8")
	httpReq.Header.Set("Accept", "text/xml")
	resp, err = hc.Do(httpReq)
	if err != nil {
		release()
		return nil, nil, &TransportError{Op: sr.op, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		// Drain a little so that the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		release()
		return nil, nil, &TransportError{Op: sr.op, StatusCode: resp.StatusCode, Err: fmt.Errorf("HTTP status %d", resp.StatusCode)}
	}
	return resp, release, nil
}

// readReply reads a whole answer, at most MaxReplySize bytes, and closes it.
func readReply(op string, resp *http.Response, release func()) ([]byte, error) {
	defer release()
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, MaxReplySize+1))
	if err != nil {
		return nil, &TransportError{Op: op, Err: err}
	}
	if len(reply) > MaxReplySize {
		return nil, &ResponseError{Op: op, Err: fmt.Errorf("larger than %d bytes", MaxReplySize)}
	}
	return reply, nil
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
