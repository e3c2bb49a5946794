package wxpayv3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay/internal/httpclient"
)

// DefaultEndpoint is WeChat Pay's API host.
const DefaultEndpoint = "https://api.mch.weixin.qq.com"

// DefaultUserAgent is the User-Agent of requests when Client.UserAgent is
// empty. WeChat Pay refuses APIv3 requests without one.
const DefaultUserAgent = "caddy-wxpay/wxpayv3 (+go)"

// MaxResponseSize bounds what the client reads of an answer (bill
// downloads excepted): a larger answer is an error.
const MaxResponseSize = 4 << 20

// Client calls WeChat Pay's APIv3 on behalf of one merchant. It signs every
// request with Signer and verifies every answer with Verifier before using
// it. It is safe for concurrent use once configured; do not change its
// fields while calls are under way.
type Client struct {
	// MchID is the merchant number (商户号); Signer.MchID when empty.
	MchID string
	// Signer signs requests with the merchant's API key.
	Signer *Signer
	// Verifier verifies answers: its Keys hold the WeChat Pay public key
	// and/or the platform certificates. Calls fail without one.
	Verifier *Verifier
	// Endpoint is the API's base URL; DefaultEndpoint when empty.
	Endpoint string
	// FailoverEndpoint is where a call that is safe to repeat is sent once
	// more, signed afresh, when Endpoint gave no answer or an HTTP 5xx:
	// WeChat's disaster-recovery twin of its host (wxpay's
	// DisasterRecoveryEndpoint, api2.mch.weixin.qq.com). Empty: no
	// failover. Placing an order (the transactions' prepay calls) is never
	// repeated; a refund is (the same out_refund_no is one refund), as are
	// queries, closes, bills and the certificates' download; Do repeats
	// only a GET.
	FailoverEndpoint string
	// OnFailover, when set, is told of each failover and of the failure
	// that caused it.
	OnFailover func(op string, err error)
	// HTTPClient sends the requests; one from NewHTTPClient when nil.
	HTTPClient *http.Client
	// Timeout bounds each call, on top of the context's deadline; for
	// DownloadBill it bounds the download until the stream is closed.
	// Zero means only the context bounds it.
	Timeout time.Duration
	// WechatpaySerial is sent as the Wechatpay-Serial header of every
	// request when set: the WeChat Pay public key id (PUB_KEY_ID_…) or a
	// platform certificate serial. WeChat signs its answer with the key it
	// names, and it names the key that encrypted sensitive fields.
	WechatpaySerial string
	// WechatpaySerialFunc, when WechatpaySerial is empty, gives the header
	// per request: with platform certificates only, the newest one's
	// serial (PlatformCertificates.Newest), which changes as WeChat
	// rotates them. "" sends no header.
	WechatpaySerialFunc func() string
	// UserAgent is sent as User-Agent; DefaultUserAgent when empty.
	UserAgent string
	// Now is the clock of request timestamps; time.Now when nil.
	Now func() time.Time
	// Nonce makes request nonces; NonceStr when nil.
	Nonce func() string

	once        sync.Once
	defaultHTTP *http.Client
}

// NewHTTPClient returns an HTTP client for calls to WeChat sized for
// maxConcurrent concurrent calls. It never follows redirects (following
// one would send a signed request elsewhere) and trusts the system's root
// certificates.
func NewHTTPClient(maxConcurrent int) *http.Client { return httpclient.New(maxConcurrent) }

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	c.once.Do(func() { c.defaultHTTP = NewHTTPClient(64) })
	return c.defaultHTTP
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimSuffix(c.Endpoint, "/")
}

func (c *Client) mchID() string {
	if c.MchID != "" {
		return c.MchID
	}
	if c.Signer != nil {
		return c.Signer.MchID
	}
	return ""
}

func (c *Client) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Client) nonce() string {
	if c.Nonce == nil {
		return NonceStr()
	}
	return c.Nonce()
}

func (c *Client) userAgent() string {
	if c.UserAgent == "" {
		return DefaultUserAgent
	}
	return c.UserAgent
}

// Do calls the API: it JSON-encodes in (when not nil) as the body, signs
// the request over the exact target and body sent, sends it to path (with
// query) on the endpoint, reads at most MaxResponseSize bytes of the
// answer and verifies it — every answer, 2xx or not, a 204 over its empty
// body — before using it. Then a 2xx answer is decoded into out (when not
// nil and the answer has a body), and any other status is an *APIError.
//
// Errors: *TransportError (no answer), *VerifyError (an answer that does
// not verify), *APIError (WeChat refused), *ResponseError (a verified 2xx
// answer that does not decode). After a VerifyError, a ResponseError or a
// TransportError the call may have had its effect.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	_, err := c.do(ctx, method, path, query, in, out, method == http.MethodGet)
	return err
}

// do is Do that also returns the answer's status, so that the typed calls
// can report a verified answer that lacks what they need; repeatable says
// whether the call may fail over to FailoverEndpoint.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any, repeatable bool) (status int, err error) {
	op := method + " " + path
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?#") {
		return 0, fmt.Errorf("wxpayv3 %s: path must start with / and carry no query (pass it as query)", op)
	}
	if c.Verifier == nil {
		return 0, fmt.Errorf("wxpayv3 %s: the client has no Verifier: answers could not be verified", op)
	}
	var body []byte
	if in != nil {
		if body, err = encodeJSON(in); err != nil {
			return 0, fmt.Errorf("wxpayv3 %s: encode request: %w", op, err)
		}
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	ans, err := c.exchangeFailover(ctx, op, method, target, body, repeatable)
	if err != nil {
		return 0, err
	}
	err = finish(op, ans, c.Verifier.Verify, out)
	if err != nil && ans.first != nil && method != http.MethodGet && !OutcomeUnknown(err) && !orderStateAnswer(err) {
		// The first attempt may have done it; the twin's refusal (a rate
		// limit on a request already under way, say) does not say. (An
		// answer about the order's state — closed, paid — holds whatever
		// the first attempt did.)
		return ans.status, &FailoverError{Op: op, First: ans.first, Twin: err}
	}
	return ans.status, err
}

// exchangeFailover is exchange of target (a path and query) on the
// endpoint and, when repeatable and the endpoint gave no answer or an
// HTTP 5xx while the caller still waits, once more on FailoverEndpoint. An
// answer below 500, verified or not, is never sent to the twin.
func (c *Client) exchangeFailover(ctx context.Context, op, method, target string, body []byte, repeatable bool) (*answer, error) {
	ans, err := c.exchange(ctx, op, method, c.endpoint()+target, body)
	if !repeatable || c.FailoverEndpoint == "" || ctx.Err() != nil {
		return ans, err
	}
	var cause error
	var te *TransportError
	switch {
	case err != nil && errors.As(err, &te):
		cause = err
	case err == nil && ans.status >= 500:
		cause = finish(op, ans, c.Verifier.Verify, nil) // a 5xx *APIError, or the answer's *VerifyError
	default:
		return ans, err
	}
	if c.OnFailover != nil {
		c.OnFailover(op, cause)
	}
	twin, err := c.exchange(ctx, op, method, strings.TrimSuffix(c.FailoverEndpoint, "/")+target, body)
	if err != nil {
		return nil, &FailoverError{Op: op, First: cause, Twin: err}
	}
	twin.first = cause
	return twin, nil
}

// encodeJSON encodes v without HTML escaping (the body is signed as
// sent, so either form would do; this one is readable) and without the
// encoder's trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// answer is an answer read whole, not yet verified.
type answer struct {
	status int
	header http.Header
	body   []byte
	// first is, for an answer of the failover endpoint, why the endpoint's
	// own attempt failed (no answer, or a 5xx).
	first error
}

// send signs and sends one request and returns the answer with its body
// unread. The caller closes the body and then calls release, which ends
// the call's Timeout.
func (c *Client) send(ctx context.Context, op, method, target string, body []byte) (resp *http.Response, release func(), err error) {
	if c.Signer == nil {
		return nil, nil, fmt.Errorf("wxpayv3 %s: the client has no Signer", op)
	}
	release = func() {}
	if c.Timeout > 0 {
		ctx, release = context.WithTimeout(ctx, c.Timeout)
	}
	return c.sendWith(ctx, release, op, method, target, body)
}

// sendStream is send for an answer read as a stream: Timeout bounds the
// wait for the answer, then each stretch without progress (idle.Touch
// renews it).
func (c *Client) sendStream(ctx context.Context, op, method, target string) (resp *http.Response, release func(), idle *httpclient.IdleTimeout, err error) {
	if c.Signer == nil {
		return nil, nil, nil, fmt.Errorf("wxpayv3 %s: the client has no Signer", op)
	}
	ctx, idle = httpclient.WithIdleTimeout(ctx, c.Timeout)
	resp, release, err = c.sendWith(ctx, idle.Release, op, method, target, nil)
	return resp, release, idle, err
}

// sendWith signs and sends a request under ctx; release ends its timeout
// (called here on failure).
func (c *Client) sendWith(ctx context.Context, release func(), op, method, target string, body []byte) (resp *http.Response, _ func(), err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("wxpayv3 %s: %w", op, err)
	}
	// Sign the request target exactly as it goes on the request line.
	auth, err := c.Signer.Authorization(method, req.URL.RequestURI(), body, c.now().Unix(), c.nonce())
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("wxpayv3 %s: %w", op, err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.userAgent())
	serial := c.WechatpaySerial
	if serial == "" && c.WechatpaySerialFunc != nil {
		serial = c.WechatpaySerialFunc()
	}
	if serial != "" {
		req.Header.Set(HeaderSerial, serial)
	}
	resp, err = c.httpClient().Do(req)
	if err != nil {
		release()
		return nil, nil, &TransportError{Op: op, Err: err}
	}
	return resp, release, nil
}

// exchange sends one request and reads its whole answer.
func (c *Client) exchange(ctx context.Context, op, method, target string, body []byte) (*answer, error) {
	resp, release, err := c.send(ctx, op, method, target, body)
	if err != nil {
		return nil, err
	}
	defer release()
	return readAnswer(op, resp)
}

// readAnswer reads at most MaxResponseSize bytes of an answer and closes it.
func readAnswer(op string, resp *http.Response) (*answer, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, &TransportError{Op: op, Err: fmt.Errorf("reading the answer (HTTP %d): %w", resp.StatusCode, err)}
	}
	if len(b) > MaxResponseSize {
		return nil, &ResponseError{Op: op, Status: resp.StatusCode, Err: fmt.Errorf("answer is larger than %d bytes", MaxResponseSize)}
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// finish verifies an answer, then turns it into the call's outcome: an
// *APIError for a status other than 2xx, else out decoded.
func finish(op string, ans *answer, verify func(http.Header, []byte) error, out any) error {
	if err := verify(ans.header, ans.body); err != nil {
		ve := &VerifyError{Op: op, Status: ans.status, Err: err, RequestID: ans.header.Get(HeaderRequestID)}
		var e wechatError
		if json.Unmarshal(ans.body, &e) == nil {
			ve.Code, ve.Message = e.Code, e.Message
		}
		return ve
	}
	if ans.status < 200 || ans.status > 299 {
		ae := &APIError{Op: op, Status: ans.status, RequestID: ans.header.Get(HeaderRequestID)}
		var e wechatError
		if err := json.Unmarshal(ans.body, &e); err == nil {
			ae.Code, ae.Message, ae.Detail = e.Code, e.Message, e.Detail
		} else {
			ae.Message = fmt.Sprintf("answer is not a JSON error object (%d bytes)", len(ans.body))
		}
		return ae
	}
	if out == nil || (len(ans.body) == 0 && ans.status == http.StatusNoContent) {
		return nil
	}
	if err := json.Unmarshal(ans.body, out); err != nil {
		return &ResponseError{Op: op, Status: ans.status, Err: fmt.Errorf("does not decode: %v", err)}
	}
	return nil
}

// wechatError is the body of WeChat's error answers.
type wechatError struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail"`
}
