package wxpaysim

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// WeChat's platform API as the payment flows need it: a mini program's
// login code exchanged for the user's openid (GET /sns/jscode2session),
// answered as WeChat answers: JSON with openid and session_key, or errcode
// and errmsg (HTTP 200 either way).
//
// A code is any text the test chooses (wx.login's stands in): the text
// before its last '.' names the user, so "alice.1" and "alice.2" are two
// logins of one user, with one openid per app. A code is taken once
// (40163 after); a code starting "invalid" is refused (40029).

// OpenIDFor is the openid the simulator gives user (a code's text before
// its last '.') in app appID: 28 characters, as WeChat's.
func OpenIDFor(appID, user string) string {
	sum := sha256.Sum256([]byte(appID + "\x00" + user))
	return "o" + base64.RawURLEncoding.EncodeToString(sum[:])[:27]
}

func (s *Simulator) serveCode2Session(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	appID, secret, code := q.Get("appid"), q.Get("secret"), q.Get("js_code")
	answer := func(v map[string]any) {
		w.Header().Set("Content-Type", "text/plain") // as WeChat labels it
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(code int, msg string) {
		answer(map[string]any{"errcode": code, "errmsg": msg + ", rid: sim"})
	}
	want, ok := s.secrets[appID]
	switch {
	case q.Get("grant_type") != "authorization_code":
		fail(40002, "invalid grant_type")
		return
	case appID == "" || !ok:
		fail(40013, "invalid appid")
		return
	case subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1:
		fail(40125, "invalid appsecret")
		return
	case code == "" || len(code) > 128 || strings.HasPrefix(code, "invalid"):
		fail(40029, "invalid code")
		return
	}
	s.mu.Lock()
	if s.usedCodes == nil {
		s.usedCodes = map[string]bool{}
	}
	key := appID + "\x00" + code
	used := s.usedCodes[key]
	if !used && len(s.usedCodes) < 100000 {
		s.usedCodes[key] = true
	}
	s.mu.Unlock()
	if used {
		fail(40163, "code been used")
		return
	}
	user := code
	if i := strings.LastIndexByte(code, '.'); i > 0 {
		user = code[:i]
	}
	sum := sha256.Sum256([]byte("session\x00" + key))
	answer(map[string]any{"openid": OpenIDFor(appID, user), "session_key": base64.StdEncoding.EncodeToString(sum[:16])})
}

// OAuthUser is the user the simulator's web authorisation answers for:
// its codes are OAuthUser's logins, so its openid in an app is
// OpenIDFor(appID, OAuthUser).
const OAuthUser = "web"

// serveAuthorize plays WeChat's web authorisation page (snsapi_base, which
// asks the user nothing): it sends the browser back to redirect_uri with a
// fresh code and the state.
func (s *Simulator) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	appID, redirect := q.Get("appid"), q.Get("redirect_uri")
	_, known := s.secrets[appID]
	u, err := url.Parse(redirect)
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	case !known:
		http.Error(w, "appid参数错误", http.StatusBadRequest)
		return
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		http.Error(w, "redirect_uri参数错误", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code" || q.Get("scope") != "snsapi_base":
		http.Error(w, "scope参数错误或没有scope权限", http.StatusBadRequest)
		return
	case !validOAuthState(q.Get("state")):
		// "state … 开发者可以填写a-zA-Z0-9的参数值，最多128字节"; WeChat checks
		// the link against its pattern and shows an error page.
		http.Error(w, "该链接无法访问 (state must be a-zA-Z0-9, at most 128 bytes)", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.oauthSeq++
	code := fmt.Sprintf("%s.%d", OAuthUser, s.oauthSeq)
	if s.oauthCodes == nil {
		s.oauthCodes = map[string]string{}
	}
	if len(s.oauthCodes) < 100000 {
		s.oauthCodes[code] = appID
	}
	s.mu.Unlock()
	back := u.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	u.RawQuery = back.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// serveOAuthToken plays GET /sns/oauth2/access_token: a code the
// authorisation issued for the app, once.
func (s *Simulator) serveOAuthToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	appID, secret, code := q.Get("appid"), q.Get("secret"), q.Get("code")
	answer := func(v map[string]any) {
		w.Header().Set("Content-Type", "application/json; encoding=utf-8")
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(code int, msg string) { answer(map[string]any{"errcode": code, "errmsg": msg + ", rid: sim"}) }
	want, ok := s.secrets[appID]
	switch {
	case q.Get("grant_type") != "authorization_code":
		fail(40002, "invalid grant_type")
		return
	case !ok:
		fail(40013, "invalid appid")
		return
	case subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1:
		fail(40125, "invalid appsecret")
		return
	}
	s.mu.Lock()
	issuedFor, issued := s.oauthCodes[code]
	delete(s.oauthCodes, code)
	s.mu.Unlock()
	if !issued || issuedFor != appID {
		fail(40029, "invalid code")
		return
	}
	answer(map[string]any{"access_token": "sim-access-token", "expires_in": 7200, "refresh_token": "sim-refresh-token",
		"openid": OpenIDFor(appID, OAuthUser), "scope": "snsapi_base"})
}

// validOAuthState reports whether state is one WeChat's authorisation
// link takes: at most 128 of a-z, A-Z, 0-9 (empty is allowed).
func validOAuthState(state string) bool {
	if len(state) > 128 {
		return false
	}
	for _, c := range []byte(state) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
