package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// openIDSource builds the merchant's source of openids from its app
// secrets; nil without any.
func (cfg *Merchant) openIDSource(m *gateway.Merchant, repl *caddy.Replacer) (gateway.OpenIDSource, error) {
	if len(cfg.AppSecrets) == 0 {
		if cfg.SNSEndpoint != "" {
			return nil, errors.New("sns_endpoint without app_secret: nothing would call it")
		}
		return nil, nil
	}
	secrets := make(map[string]wxpay.AppSecret, len(cfg.AppSecrets))
	for appID, raw := range cfg.AppSecrets {
		if !m.HasAppID(appID) {
			return nil, fmt.Errorf("app_secret for %q: not one of the merchant's app ids", appID)
		}
		secret := strings.TrimSpace(repl.ReplaceKnown(raw, ""))
		if len(secret) != 32 {
			return nil, fmt.Errorf("app_secret for %s: %d characters once resolved, want WeChat's 32", appID, len(secret))
		}
		secrets[appID] = wxpay.AppSecret(secret)
	}
	endpoint := strings.TrimSpace(repl.ReplaceAll(cfg.SNSEndpoint, ""))
	if endpoint == "" {
		endpoint = wxpay.DefaultSNSEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && gateway.IsLoopback(u.Hostname()))) {
		return nil, fmt.Errorf("sns_endpoint %q is not an https URL (or http on loopback)", endpoint)
	}
	return &snsSource{client: &wxpay.SNSClient{Endpoint: strings.TrimSuffix(endpoint, "/"), HTTPClient: wxpay.NewHTTPClient(64), Timeout: 6 * time.Second}, secrets: secrets}, nil
}

// snsSource is gateway.OpenIDSource over WeChat's platform API.
type snsSource struct {
	client  *wxpay.SNSClient
	secrets map[string]wxpay.AppSecret
}

func (s *snsSource) MiniProgramOpenID(ctx context.Context, appID, code string) (string, error) {
	secret, ok := s.secrets[appID]
	if !ok {
		return "", noAppSecret(appID)
	}
	sess, err := s.client.Code2Session(ctx, appID, secret, code)
	if err == nil {
		return sess.OpenID, nil
	}
	return "", snsError(appID, err, "call wx.login again")
}

func (s *snsSource) WebOpenID(ctx context.Context, appID, code string) (string, error) {
	secret, ok := s.secrets[appID]
	if !ok {
		return "", noAppSecret(appID)
	}
	openID, err := s.client.OAuthOpenID(ctx, appID, secret, code)
	if err == nil {
		return openID, nil
	}
	return "", snsError(appID, err, "start the authorisation again")
}

func noAppSecret(appID string) error {
	return &gateway.Error{Status: http.StatusNotImplemented, Code: "NO_APP_SECRET",
		Message: fmt.Sprintf("no app_secret for app %s", appID)}
}

// snsError maps a failure of WeChat's platform API onto the caller's
// answer; again says what to do about a refused code.
func snsError(appID string, err error, again string) error {
	var se *wxpay.SNSError
	var te *wxpay.TransportError
	switch {
	case errors.As(err, &se) && (se.Code == 40029 || se.Code == 40163):
		return &gateway.Error{Status: http.StatusBadRequest, Code: "INVALID_CODE",
			Message: fmt.Sprintf("WeChat refused the code (errcode %d: %s): %s", se.Code, se.Message, again)}
	case errors.As(err, &se) && se.Code == 45011:
		return &gateway.Error{Status: http.StatusTooManyRequests, Code: "FREQUENCY_LIMITED", Message: "WeChat limits the logins of this app", Err: err}
	case errors.As(err, &se):
		return &gateway.Error{Status: http.StatusBadGateway, Code: "WECHAT_REFUSED",
			Message: fmt.Sprintf("WeChat refused the app's credentials (errcode %d): check app_secret for %s", se.Code, appID), Err: err}
	case errors.As(err, &te) && te.StatusCode == 0:
		return &gateway.Error{Status: http.StatusBadGateway, Code: "WECHAT_UNREACHABLE", Message: "WeChat's platform API could not be reached", Err: err}
	}
	return &gateway.Error{Status: http.StatusBadGateway, Code: "WECHAT_BAD_REPLY", Message: "WeChat's platform API answered what the gateway cannot use", Err: err}
}

// GET /wxpay/openid/miniprogram?code=[&app_id=]: a mini program's login
// code for its user's openid token. No API token: the mini program calls
// it; a code is WeChat's and good once.
func (h *Handler) serveMiniProgramOpenID(svc *gateway.Service, _ http.ResponseWriter, r *http.Request) (any, error) {
	q := r.URL.Query()
	return svc.MiniProgramOpenID(r.Context(), h.merchant, q.Get("app_id"), q.Get("code"))
}

// openIDKey is the key of the openid tokens: derived from the API token,
// so that every gateway of a cluster (one configuration) checks the
// tokens any of them issued; none without an API token.
func (a *App) openIDKey() []byte {
	if !a.hasToken {
		return nil
	}
	m := hmac.New(sha256.New, a.apiToken[:])
	m.Write([]byte("caddy-wxpay openid token v1"))
	return m.Sum(nil)
}
