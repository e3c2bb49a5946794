package wxpayv3

import (
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeWeChat is an httptest server that plays WeChat Pay's APIv3 with the
// test keys: it checks every request's Authorization against the merchant
// certificate, as WeChat does, records the request, and answers what the
// test's route says, signed with the WeChat Pay public key's private half
// (or as the reply asks).
type fakeWeChat struct {
	t     *testing.T
	f     *fixture
	srv   *httptest.Server
	clock *clock

	mu    sync.Mutex
	seen  []*seenRequest
	route func(r *seenRequest) *reply
}

// seenRequest is a request as the fake received it.
type seenRequest struct {
	Method string
	URI    string // the request target, as signed
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	Auth   *Authorization
}

// reply is what the fake answers.
type reply struct {
	status int
	body   []byte
	header map[string]string

	signKey  *rsa.PrivateKey // the key that signs; the WeChat Pay public key's by default
	serial   string          // Wechatpay-Serial; the public key id by default
	unsigned bool            // no Wechatpay-* headers at all
	skew     time.Duration   // added to the Wechatpay-Timestamp
	badSig   bool            // a signature over other bytes
	signTest bool            // a WECHATPAY/SIGNTEST/ probe
	wait     bool            // never answer: block until the client gives up
	stream   func(w http.ResponseWriter, r *http.Request)
}

func newFakeWeChat(t *testing.T) *fakeWeChat {
	f := fx(t)
	w := &fakeWeChat{t: t, f: f, clock: newClock(f.now)}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

// handle sets the route.
func (w *fakeWeChat) handle(route func(r *seenRequest) *reply) {
	w.mu.Lock()
	w.route = route
	w.mu.Unlock()
}

// requests returns the requests seen so far.
func (w *fakeWeChat) requests() []*seenRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*seenRequest(nil), w.seen...)
}

func (w *fakeWeChat) count(path string) int {
	n := 0
	for _, r := range w.requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func (w *fakeWeChat) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.t.Errorf("fake WeChat: reading the request: %v", err)
		return
	}
	sr := &seenRequest{Method: r.Method, URI: r.RequestURI, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body}
	if why := w.checkAuth(r, sr); why != "" {
		w.t.Errorf("fake WeChat: %s %s: %s", r.Method, r.RequestURI, why)
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusUnauthorized)
		rw.Write([]byte(`{"code":"SIGN_ERROR","message":"` + why + `"}`))
		return
	}
	w.mu.Lock()
	w.seen = append(w.seen, sr)
	route := w.route
	w.mu.Unlock()
	var rep *reply
	if route != nil {
		rep = route(sr)
	}
	if rep == nil {
		rep = &reply{status: http.StatusNotFound, body: []byte(`{"code":"NOT_FOUND","message":"no route in the fake"}`)}
	}
	if rep.wait {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	h := rw.Header()
	for k, v := range rep.header {
		h.Set(k, v)
	}
	h.Set(HeaderRequestID, "08F78BB5AF0610D302A1C2E1A1A1A1A1")
	if rep.stream != nil {
		rep.stream(rw, r)
		return
	}
	if !rep.unsigned {
		key, serial := w.f.wechatKey, w.f.v.PublicKeyID
		if rep.signKey != nil {
			key = rep.signKey
		}
		if rep.serial != "" {
			serial = rep.serial
		}
		signed := rep.body
		if rep.badSig {
			signed = append([]byte("x"), rep.body...)
		}
		ts := w.clock.Now().Add(rep.skew).Unix()
		for k, v := range signAnswer(w.t, key, serial, ts, NonceStr(), signed) {
			h[k] = v
		}
		if rep.signTest {
			h.Set(HeaderSignature, "WECHATPAY/SIGNTEST/"+h.Get(HeaderSignature))
		}
	}
	if len(rep.body) > 0 {
		h.Set("Content-Type", "application/json")
	}
	status := rep.status
	if status == 0 {
		status = http.StatusOK
	}
	rw.WriteHeader(status)
	rw.Write(rep.body)
}

// checkAuth checks a request as WeChat does; it returns why it is refused.
func (w *fakeWeChat) checkAuth(r *http.Request, sr *seenRequest) string {
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return err.Error()
	}
	sr.Auth = a
	if a.MchID != w.f.v.MchID {
		return "mchid " + a.MchID
	}
	if a.SerialNo != w.f.v.Serials["merchant"] {
		return "serial_no " + a.SerialNo + " is not the merchant certificate's"
	}
	ts, ok := parseUnix(a.Timestamp)
	if !ok {
		return "timestamp " + a.Timestamp
	}
	if d := w.clock.Now().Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return "timestamp too far from now"
	}
	if err := a.VerifyRequest(w.f.merchantCert.PublicKey.(*rsa.PublicKey), r.Method, r.RequestURI, sr.Body); err != nil {
		return "signature: " + err.Error()
	}
	if r.Header.Get("User-Agent") == "" {
		return "no User-Agent"
	}
	if r.Header.Get("Accept") != "application/json" {
		return "Accept is " + r.Header.Get("Accept")
	}
	if len(sr.Body) > 0 && r.Header.Get("Content-Type") != "application/json" {
		return "Content-Type is " + r.Header.Get("Content-Type")
	}
	return ""
}

// client returns a client of the fake in public key mode.
func (w *fakeWeChat) client() *Client {
	f := w.f
	return &Client{
		MchID:           f.v.MchID,
		Signer:          &Signer{MchID: f.v.MchID, Serial: f.v.Serials["merchant"], Key: f.merchantKey},
		Verifier:        &Verifier{Keys: NewKeySet(map[string]*rsa.PublicKey{f.v.PublicKeyID: f.wechatPub}), Now: w.clock.Now},
		Endpoint:        w.srv.URL,
		HTTPClient:      w.srv.Client(),
		WechatpaySerial: f.v.PublicKeyID,
		Now:             w.clock.Now,
	}
}

// jsonReply is a signed 200 answer of v.
func jsonReply(t testing.TB, v any) *reply {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &reply{status: http.StatusOK, body: b}
}

// jsonMap decodes a JSON object for comparisons.
func jsonMap(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

func errorContains(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}
