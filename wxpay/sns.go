package wxpay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// A JSAPI payment needs the payer's openid for the app it is made in.
// WeChat's platform API (api.weixin.qq.com, not the payment API) gives it
// for a code the app obtained: a mini program's wx.login code
// (jscode2session). The app's secret (AppSecret) signs nothing: it is sent
// as a query parameter, which is WeChat's design; it never leaves the
// gateway otherwise.

// DefaultSNSEndpoint is WeChat's platform API.
const DefaultSNSEndpoint = "https://api.weixin.qq.com"

// AppSecret is an app's secret (开发管理 → 开发设置 → AppSecret). It prints
// redacted.
type AppSecret string

func (AppSecret) String() string   { return redacted }
func (AppSecret) GoString() string { return "wxpay.AppSecret([REDACTED])" }

// SNSClient calls WeChat's platform API for openids.
type SNSClient struct {
	// Endpoint is the API's base URL; DefaultSNSEndpoint when empty.
	Endpoint string
	// HTTPClient sends the requests; a client from NewHTTPClient when nil.
	HTTPClient *http.Client
	// Timeout bounds a call on top of the context's deadline; 6s when
	// zero.
	Timeout time.Duration
}

// Session is what jscode2session tells of a mini program's user. The
// session_key WeChat also sends is dropped: the gateway has no use for it,
// and it must not travel further.
type Session struct {
	OpenID  string
	UnionID string // when the app is bound to an open platform account
}

// SNSError is WeChat's refusal (errcode, errmsg): 40029 an invalid code,
// 40163 a code used already, 45011 too many calls, 40125 a wrong secret…
type SNSError struct {
	Op      string
	Code    int
	Message string
}

func (e *SNSError) Error() string {
	return fmt.Sprintf("wxpay %s: errcode %d: %s", e.Op, e.Code, e.Message)
}

// Code2Session exchanges a mini program's login code for the user's
// openid (GET /sns/jscode2session).
func (c *SNSClient) Code2Session(ctx context.Context, appID string, secret AppSecret, code string) (*Session, error) {
	const op = "jscode2session"
	if appID == "" || secret == "" || code == "" {
		return nil, fmt.Errorf("wxpay %s: app id, secret and code are required", op)
	}
	q := url.Values{"appid": {appID}, "secret": {string(secret)}, "js_code": {code}, "grant_type": {"authorization_code"}}
	var doc struct {
		OpenID     string `json:"openid"`
		UnionID    string `json:"unionid"`
		SessionKey string `json:"session_key"`
		ErrCode    int    `json:"errcode"`
		ErrMsg     string `json:"errmsg"`
	}
	if err := c.get(ctx, op, "/sns/jscode2session", q, &doc); err != nil {
		return nil, err
	}
	if doc.ErrCode != 0 {
		return nil, &SNSError{Op: op, Code: doc.ErrCode, Message: doc.ErrMsg}
	}
	if doc.OpenID == "" {
		return nil, &ResponseError{Op: op, Err: errors.New("no openid in the answer")}
	}
	return &Session{OpenID: doc.OpenID, UnionID: doc.UnionID}, nil
}

// DefaultOAuthEndpoint is where an official account's web authorisation
// sends the payer's browser.
const DefaultOAuthEndpoint = "https://open.weixin.qq.com"

// AuthorizeURL is the address of WeChat's web authorisation (snsapi_base:
// silent, the openid only) for an official account's page: WeChat sends
// the browser back to redirectURI with a code and state.
func AuthorizeURL(endpoint, appID, redirectURI, state string) string {
	if endpoint == "" {
		endpoint = DefaultOAuthEndpoint
	}
	// WeChat wants its parameters in this order, and the fragment.
	return endpoint + "/connect/oauth2/authorize?appid=" + url.QueryEscape(appID) + "&redirect_uri=" + url.QueryEscape(redirectURI) +
		"&response_type=code&scope=snsapi_base&state=" + url.QueryEscape(state) + "#wechat_redirect"
}

// OAuthOpenID exchanges an official account's web-authorisation code for
// the user's openid (GET /sns/oauth2/access_token). The access and
// refresh tokens WeChat also sends are dropped.
func (c *SNSClient) OAuthOpenID(ctx context.Context, appID string, secret AppSecret, code string) (string, error) {
	const op = "oauth2/access_token"
	if appID == "" || secret == "" || code == "" {
		return "", fmt.Errorf("wxpay %s: app id, secret and code are required", op)
	}
	q := url.Values{"appid": {appID}, "secret": {string(secret)}, "code": {code}, "grant_type": {"authorization_code"}}
	var doc struct {
		OpenID  string `json:"openid"`
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := c.get(ctx, op, "/sns/oauth2/access_token", q, &doc); err != nil {
		return "", err
	}
	if doc.ErrCode != 0 {
		return "", &SNSError{Op: op, Code: doc.ErrCode, Message: doc.ErrMsg}
	}
	if doc.OpenID == "" {
		return "", &ResponseError{Op: op, Err: errors.New("no openid in the answer")}
	}
	return doc.OpenID, nil
}

// get calls path with q and decodes the JSON answer into v. Its errors
// never carry the URL: its query holds the app's secret.
func (c *SNSClient) get(ctx context.Context, op, path string, q url.Values, v any) error {
	endpoint := c.Endpoint
	if endpoint == "" {
		endpoint = DefaultSNSEndpoint
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 6 * time.Second
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(64)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+path+"?"+q.Encode(), nil)
	if err != nil {
		return &TransportError{Op: op, Err: errors.New("bad endpoint")}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL and its secret
		}
		return &TransportError{Op: op, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &TransportError{Op: op, StatusCode: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return &TransportError{Op: op, Err: err}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &ResponseError{Op: op, Err: errors.New("the answer is not JSON")}
	}
	return nil
}
