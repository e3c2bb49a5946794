package caddymodule

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-wxpay/caddy-wxpay/gateway"
	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// An official account's page gets its payer's openid through WeChat's web
// authorisation (snsapi_base, which asks the user nothing):
//
//	GET /wxpay/oauth/start?redirect=<page URL>[&app_id=]
//	  → 302 WeChat's authorize page → 302 /wxpay/oauth/callback?code=&state=
//	  → 302 <page URL>?openid_token=<token>
//
// The page URL must be on this site or under a pay directory's host (no
// open redirect). WeChat's state parameter is short: it carries a random
// nonce, and the page URL travels in a signed cookie bound to it, valid
// ten minutes, sent back on WeChat's top-level redirect (SameSite=Lax).

const (
	oauthCookie   = "wxpay_oauth"
	oauthLifetime = 10 * time.Minute
)

type oauthState struct {
	Nonce    string `json:"n"`
	Redirect string `json:"r"`
	AppID    string `json:"a"`
	Exp      int64  `json:"e"`
}

// runtimeFor is the runtime of the merchant named name.
func (a *App) runtimeFor(name string) *merchantRuntime {
	for _, rt := range a.runtimes {
		if rt.merchant == name {
			return rt
		}
	}
	return &merchantRuntime{merchant: name, oauthEndpoint: wxpay.DefaultOAuthEndpoint}
}

// GET /wxpay/oauth/start?redirect=[&app_id=]
func (h *Handler) serveOAuthStart(w http.ResponseWriter, r *http.Request) {
	svc, err := h.app.serviceFor(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	if !svc.IssuesOpenIDs(h.merchant) {
		h.fail(w, &gateway.Error{Status: http.StatusNotImplemented, Code: "NO_APP_SECRET",
			Message: "openids need the app's secret: set app_secret <app_id> <secret> in the merchant"})
		return
	}
	q := r.URL.Query()
	appID := q.Get("app_id")
	if appID == "" {
		appID = h.merchant.AppIDs[0]
	} else if !h.merchant.HasAppID(appID) {
		h.fail(w, gateway.BadRequest("app_id %q is not one of merchant %s's app ids", appID, h.merchant.Name))
		return
	}
	rt := h.app.runtimeFor(h.merchant.Name)
	redirect := q.Get("redirect")
	if err := checkOAuthRedirect(redirect, r, rt.payHosts); err != nil {
		h.fail(w, err)
		return
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	// In hex: WeChat allows state only [a-zA-Z0-9] (at most 128 bytes,
	// "state … 开发者可以填写a-zA-Z0-9的参数值"), and checks the link.
	st := oauthState{Nonce: hex.EncodeToString(nonce), Redirect: redirect, AppID: appID,
		Exp: time.Now().Add(oauthLifetime).Unix()}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	http.SetCookie(w, &http.Cookie{Name: oauthCookie, Value: h.signState(st), Path: h.BasePath + "/oauth/",
		MaxAge: int(oauthLifetime / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	callback := scheme + "://" + r.Host + h.BasePath + "/oauth/callback"
	http.Redirect(w, r, wxpay.AuthorizeURL(rt.oauthEndpoint, appID, callback, st.Nonce), http.StatusFound)
}

// GET /wxpay/oauth/callback?code=&state=
func (h *Handler) serveOAuthCallback(w http.ResponseWriter, r *http.Request) {
	svc, err := h.app.serviceFor(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	c, err := r.Cookie(oauthCookie)
	var st oauthState
	if err != nil || !h.readState(c.Value, &st) || time.Now().Unix() >= st.Exp ||
		!hmac.Equal([]byte(st.Nonce), []byte(r.URL.Query().Get("state"))) {
		h.fail(w, gateway.BadRequest("the authorisation is not this browser's, or too old: start it again from the page"))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: oauthCookie, Value: "", Path: h.BasePath + "/oauth/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	tok, err := svc.WebOpenID(r.Context(), h.merchant, st.AppID, r.URL.Query().Get("code"))
	if err != nil {
		h.fail(w, err)
		return
	}
	u, _ := url.Parse(st.Redirect) // checked at the start
	v := u.Query()
	v.Set("openid_token", tok.Token)
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// checkOAuthRedirect allows a page URL on the request's own host or on a
// pay directory's host, over https (or http when the request is plain
// http, as in tests and the demo).
func checkOAuthRedirect(redirect string, r *http.Request, payHosts []string) error {
	u, err := url.Parse(redirect)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && r.TLS == nil)) || u.User != nil {
		return gateway.BadRequest("redirect: the absolute https URL of the page to return to is required")
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(r.Host) {
		return nil
	}
	for _, h := range payHosts {
		if host == h {
			return nil
		}
	}
	return gateway.BadRequest("redirect: %s is neither this site nor a pay_directory's host", u.Host)
}

func (h *Handler) signState(st oauthState) string {
	payload, _ := json.Marshal(st)
	head := base64.RawURLEncoding.EncodeToString(payload)
	m := hmac.New(sha256.New, h.stateKey())
	m.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) readState(v string, st *oauthState) bool {
	head, sig, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, h.stateKey())
	m.Write([]byte(head))
	if !hmac.Equal(got, m.Sum(nil)) {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(head)
	return err == nil && json.Unmarshal(payload, st) == nil && st.Nonce != "" && st.AppID != ""
}

// stateKey signs the authorisation's cookie: the openid key's, for
// another purpose.
func (h *Handler) stateKey() []byte {
	m := hmac.New(sha256.New, h.app.openIDKey())
	m.Write([]byte("oauth state"))
	return m.Sum(nil)
}
