package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// A JSAPI order needs the payer's openid in the app that pays. A mini
// program gets it through the gateway (the app's secret stays here): it
// sends its wx.login code, and gets back the openid in a signed,
// short-lived form, an openid token, which it hands to the merchant's
// backend; the backend places the order with openid_token instead of
// openid, and the gateway checks the signature, the app and the expiry.
// So a front end cannot pay into another user's openid, and a backend
// that never sees an app secret still knows the openid is WeChat's.

// OpenIDSource gives the openid of a mini program's user for a login code
// (WeChat's jscode2session). Its errors are *Error: a refused code is a
// 400.
type OpenIDSource interface {
	MiniProgramOpenID(ctx context.Context, appID, code string) (string, error)
	// WebOpenID gives the openid of an official account's user for a
	// web-authorisation code (snsapi_base).
	WebOpenID(ctx context.Context, appID, code string) (string, error)
}

// OpenIDTokenLifetime is how long an openid token may be used to place
// orders.
const OpenIDTokenLifetime = 30 * time.Minute

// OpenIDToken is the answer of GET /wxpay/openid/miniprogram.
type OpenIDToken struct {
	// Token is what the order API takes as openid_token:
	// "v1.<payload>.<signature>", the payload base64url JSON
	// {"a": app id, "o": openid, "e": expiry in Unix seconds}.
	Token     string    `json:"openid_token"`
	AppID     string    `json:"app_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

type openIDClaims struct {
	AppID  string `json:"a"`
	OpenID string `json:"o"`
	Exp    int64  `json:"e"`
}

// SignOpenID makes an openid token for appID and openID, valid until exp.
func SignOpenID(key []byte, appID, openID string, exp time.Time) string {
	payload, _ := json.Marshal(openIDClaims{AppID: appID, OpenID: openID, Exp: exp.Unix()})
	head := "v1." + base64.RawURLEncoding.EncodeToString(payload)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// VerifyOpenID checks an openid token's signature and expiry at now and
// returns its app id and openid. Its errors are 400s that say what is
// wrong, never how the signature should have been.
func VerifyOpenID(key []byte, token string, now time.Time) (appID, openID string, err error) {
	bad := BadRequest("openid_token is not a token this gateway issued (GET /wxpay/openid/miniprogram)")
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != "v1" {
		return "", "", bad
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", "", bad
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return "", "", bad
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c openIDClaims
	if err != nil || json.Unmarshal(payload, &c) != nil || c.OpenID == "" || c.AppID == "" {
		return "", "", bad
	}
	if !now.Before(time.Unix(c.Exp, 0)) {
		return "", "", &Error{Status: http.StatusBadRequest, Code: "OPENID_TOKEN_EXPIRED",
			Message: "openid_token expired: get a new one with a new login code"}
	}
	return c.AppID, c.OpenID, nil
}

// MiniProgramOpenID exchanges a mini program's login code for an openid
// token of app appID (the merchant's first when empty).
func (s *Service) MiniProgramOpenID(ctx context.Context, m *Merchant, appID, code string) (*OpenIDToken, error) {
	return s.openIDToken(ctx, m, appID, code, OpenIDSource.MiniProgramOpenID)
}

// WebOpenID exchanges an official account's web-authorisation code for
// an openid token of app appID.
func (s *Service) WebOpenID(ctx context.Context, m *Merchant, appID, code string) (*OpenIDToken, error) {
	return s.openIDToken(ctx, m, appID, code, OpenIDSource.WebOpenID)
}

func (s *Service) openIDToken(ctx context.Context, m *Merchant, appID, code string,
	exchange func(OpenIDSource, context.Context, string, string) (string, error)) (*OpenIDToken, error) {
	if !s.IssuesOpenIDs(m) {
		return nil, &Error{Status: http.StatusNotImplemented, Code: "NO_APP_SECRET",
			Message: "openids need the app's secret: set app_secret <app_id> <secret> in the merchant"}
	}
	appID, err := m.appID(appID)
	if err != nil {
		return nil, err
	}
	if code == "" || len(code) > 128 {
		return nil, BadRequest("code: WeChat's code is required")
	}
	openID, err := exchange(m.OpenIDs, ctx, appID, code)
	if err != nil {
		return nil, err
	}
	exp := s.now().Add(OpenIDTokenLifetime).Truncate(time.Second)
	return &OpenIDToken{Token: SignOpenID(s.openIDKey, appID, openID, exp), AppID: appID, ExpiresAt: exp.UTC()}, nil
}

// IssuesOpenIDs reports whether the service can give m's apps' users
// openid tokens (an app secret, and a key to sign with).
func (s *Service) IssuesOpenIDs(m *Merchant) bool { return m.OpenIDs != nil && len(s.openIDKey) > 0 }

// withOpenIDToken resolves req's openid_token into its openid (the order's
// app must be the token's), on a copy.
func (s *Service) withOpenIDToken(m *Merchant, req *OrderRequest) (*OrderRequest, error) {
	if req.OpenIDToken == "" {
		return req, nil
	}
	if req.OpenID != "" {
		return nil, BadRequest("openid and openid_token: give one")
	}
	if len(s.openIDKey) == 0 {
		return nil, BadRequest("openid_token: this gateway issues none (no app_secret)")
	}
	appID, openID, err := VerifyOpenID(s.openIDKey, req.OpenIDToken, s.now())
	if err != nil {
		return nil, err
	}
	orderApp, err := m.appID(req.AppID)
	if err != nil {
		return nil, err
	}
	if appID != orderApp {
		return nil, BadRequest("openid_token is for app %s, the order for app %s", appID, orderApp)
	}
	r := *req
	r.OpenID, r.OpenIDToken = openID, ""
	return &r, nil
}
