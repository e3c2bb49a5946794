package wxpaysim

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testAPIv3Key is the test merchant's APIv3 key (32 bytes).
const testAPIv3Key = "a8f1c3e5b7d9f2a4c6e8b1d3f5a7c9e2"

// testPubKeyID is the id of the test WeChat Pay public key (34 digits, as
// real ids have).
const testPubKeyID = "PUB_KEY_ID_0114232134912410000000000000000001"

// v3TestKeys are RSA keys and certificates made once for the package's
// tests: generating RSA keys is slow.
type v3TestKeys struct {
	mchKey  *rsa.PrivateKey
	mchCert *x509.Certificate
	pubKey  *rsa.PrivateKey
	plat    []PlatformCertificate // valid 2020–2040
	expired PlatformCertificate   // valid 2010–2015
	other   *rsa.PrivateKey       // nobody's key
}

var (
	v3KeysOnce sync.Once
	v3Keys     *v3TestKeys
	v3KeysErr  error
)

func testV3Keys(t *testing.T) *v3TestKeys {
	t.Helper()
	v3KeysOnce.Do(func() {
		k := &v3TestKeys{}
		gen := func() *rsa.PrivateKey {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil && v3KeysErr == nil {
				v3KeysErr = err
			}
			return key
		}
		k.mchKey, k.pubKey, k.other = gen(), gen(), gen()
		if v3KeysErr != nil {
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: new(big.Int).SetBytes([]byte{0x1D, 0xDE, 0x55, 0xAD, 0x98, 0xED, 0x71, 0xD6, 0xED, 0xD4, 0xA4, 0xA1, 0x69, 0x96, 0xDE, 0x7B, 0x47, 0x77, 0x3A, 0x8C}),
			Subject:      pkix.Name{CommonName: testMchID, Organization: []string{"微信商户系统"}},
			NotBefore:    time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:     time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
			KeyUsage:     x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.mchKey.PublicKey, k.mchKey)
		if err == nil {
			k.mchCert, err = x509.ParseCertificate(der)
		}
		if err != nil {
			v3KeysErr = err
			return
		}
		for range 3 {
			pc, err := GeneratePlatformCertificate(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC))
			if err != nil {
				v3KeysErr = err
				return
			}
			k.plat = append(k.plat, pc)
		}
		k.expired, v3KeysErr = GeneratePlatformCertificate(time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC))
		v3Keys = k
	})
	if v3KeysErr != nil {
		t.Fatalf("generating test keys: %v", v3KeysErr)
	}
	return v3Keys
}

// Signing modes of test merchants.
const (
	modePK   = "public key"
	modeCert = "certificates"
	modeBoth = "migration"
)

// v3Config is the test merchant's APIv3 configuration in mode, with the
// first platform certificate.
func v3Config(t *testing.T, mode string, share float64) *MerchantV3 {
	k := testV3Keys(t)
	v := &MerchantV3{APIv3Key: testAPIv3Key, MerchantCertificate: k.mchCert, PublicKeyShare: share}
	if mode == modePK || mode == modeBoth {
		v.PublicKeyID, v.PublicKey = testPubKeyID, k.pubKey
	}
	if mode == modeCert || mode == modeBoth {
		v.PlatformCertificates = []PlatformCertificate{k.plat[0]}
	}
	return v
}

// v3Env is a simulator over plain HTTP whose test merchant has APIv3.
type v3Env struct {
	*env
	clk *clock
}

// newV3Env starts a simulator whose clock starts at t0 and whose test
// merchant (and merchant 10000200, API v2 only, unless cfg says
// otherwise) has APIv3 in mode. Create notify servers before it.
func newV3Env(t *testing.T, cfg Config, mode string) *v3Env {
	t.Helper()
	clk := newClock(t0)
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	if cfg.Merchants == nil {
		cfg.Merchants = []Merchant{
			{MchID: testMchID, Key: testKey, AppIDs: []string{appA, appB}, V3: v3Config(t, mode, 0.5)},
			{MchID: "10000200", Key: "0123456789abcdef0123456789abcdef", AppIDs: []string{appB}},
		}
	}
	return &v3Env{env: newEnv(t, cfg), clk: clk}
}

// client returns an APIv3 client of the test merchant.
func (e *v3Env) client(t *testing.T) *v3Client {
	k := testV3Keys(t)
	return &v3Client{t: t, base: e.srv.URL, hc: e.srv.Client(), mchID: testMchID, serial: CertificateSerial(k.mchCert), key: k.mchKey, now: e.clk.Now}
}

// v3Client signs and sends APIv3 requests, with the standard library
// only: it shares no code with the simulator.
type v3Client struct {
	t      *testing.T
	base   string
	hc     *http.Client
	mchID  string
	serial string
	key    *rsa.PrivateKey
	now    func() time.Time
}

// v3Req is a request and how to spoil it.
type v3Req struct {
	method, target string
	body           []byte          // signed and sent
	sent           []byte          // sent instead of body when set (signed: body)
	auth           string          // sent verbatim when set
	skew           time.Duration   // added to the Authorization timestamp
	key            *rsa.PrivateKey // signs instead of the merchant's key
	serial         string          // serial_no instead of the merchant certificate's
	mchID          string          // mchid instead of the client's
	contentType    string          // instead of application/json
	wechatSerial   string          // Wechatpay-Serial to send
	signTarget     string          // the target the signature covers, when not target
}

type v3Resp struct {
	status int
	header http.Header
	body   []byte
}

// sign computes the Authorization of a request.
func (c *v3Client) sign(method, target string, body []byte, ts, nonce string, key *rsa.PrivateKey, mchID, serial string) string {
	msg := method + "\n" + target + "\n" + ts + "\n" + nonce + "\n" + string(body) + "\n"
	sum := sha256.Sum256([]byte(msg))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		c.t.Fatal(err)
	}
	return fmt.Sprintf(`WECHATPAY2-SHA256-RSA2048 mchid="%s",nonce_str="%s",timestamp="%s",serial_no="%s",signature="%s"`,
		mchID, nonce, ts, serial, base64.StdEncoding.EncodeToString(sig))
}

func (c *v3Client) do(r v3Req) v3Resp {
	c.t.Helper()
	key, serial, mchID := c.key, c.serial, c.mchID
	if r.key != nil {
		key = r.key
	}
	if r.serial != "" {
		serial = r.serial
	}
	if r.mchID != "" {
		mchID = r.mchID
	}
	auth := r.auth
	if auth == "" {
		target := r.target
		if r.signTarget != "" {
			target = r.signTarget
		}
		auth = c.sign(r.method, target, r.body, strconv.FormatInt(c.now().Add(r.skew).Unix(), 10), "593BEC0C930BF1AFEB40B4A08C8FB242", key, mchID, serial)
	}
	sent := r.body
	if r.sent != nil {
		sent = r.sent
	}
	req, err := http.NewRequest(r.method, c.base+r.target, bytes.NewReader(sent))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	if r.method == http.MethodPost {
		ct := "application/json"
		if r.contentType != "" {
			ct = r.contentType
		}
		req.Header.Set("Content-Type", ct)
	}
	if r.wechatSerial != "" {
		req.Header.Set("Wechatpay-Serial", r.wechatSerial)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", r.method, r.target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return v3Resp{status: resp.StatusCode, header: resp.Header, body: b}
}

// on returns a copy of c that reports to t (a subtest's).
func (c *v3Client) on(t *testing.T) *v3Client {
	d := *c
	d.t = t
	return &d
}

func (c *v3Client) get(target string) v3Resp {
	c.t.Helper()
	return c.do(v3Req{method: http.MethodGet, target: target})
}

func (c *v3Client) post(target string, v any) v3Resp {
	c.t.Helper()
	return c.do(v3Req{method: http.MethodPost, target: target, body: mustJSON(c.t, v)})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	if b, ok := v.([]byte); ok {
		return b
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// object decodes the answer as a JSON object.
func (r v3Resp) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", r.status, err, r.body)
	}
	return m
}

// wantStatus fails unless the answer has status.
func (r v3Resp) wantStatus(t *testing.T, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("HTTP %d, want %d: %s", r.status, status, r.body)
	}
}

// wantError fails unless the answer is the error status/code.
func (r v3Resp) wantError(t *testing.T, status int, code string) map[string]any {
	t.Helper()
	r.wantStatus(t, status)
	m := r.object(t)
	if m["code"] != code || m["message"] == "" || m["message"] == nil {
		t.Fatalf("error %s %q, want %s: %s", m["code"], m["message"], code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	return m
}

// publicKeys are the keys a merchant may verify with, by serial.
func publicKeys(t *testing.T) map[string]*rsa.PublicKey {
	k := testV3Keys(t)
	m := map[string]*rsa.PublicKey{testPubKeyID: &k.pubKey.PublicKey}
	for _, pc := range append([]PlatformCertificate{k.expired}, k.plat...) {
		m[CertificateSerial(pc.Certificate)] = &pc.Key.PublicKey
	}
	return m
}

// verifyV3Headers checks WeChat's signature headers over body with the
// key the serial names, independently of the simulator's code, and
// returns that serial.
func verifyV3Headers(t *testing.T, h http.Header, body []byte) string {
	t.Helper()
	if err := checkV3Signature(t, h, body); err != nil {
		t.Fatalf("%v (body %s)", err, body)
	}
	return h.Get("Wechatpay-Serial")
}

// checkV3Signature reports what is wrong with the signature headers.
func checkV3Signature(t *testing.T, h http.Header, body []byte) error {
	ts, nonce, sig, serial := h.Get("Wechatpay-Timestamp"), h.Get("Wechatpay-Nonce"), h.Get("Wechatpay-Signature"), h.Get("Wechatpay-Serial")
	if h.Get("Wechatpay-Signature-Type") != "WECHATPAY2-SHA256-RSA2048" {
		return fmt.Errorf("Wechatpay-Signature-Type %q", h.Get("Wechatpay-Signature-Type"))
	}
	if ts == "" || nonce == "" || sig == "" || serial == "" {
		return fmt.Errorf("missing signature headers: %v", h)
	}
	pub, ok := publicKeys(t)[serial]
	if !ok {
		return fmt.Errorf("unknown Wechatpay-Serial %s", serial)
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("signature is not base64: %v", err)
	}
	sum := sha256.Sum256([]byte(ts + "\n" + nonce + "\n" + string(body) + "\n"))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], raw); err != nil {
		return fmt.Errorf("signature does not verify with %s: %v", serial, err)
	}
	return nil
}

// openGCM decrypts an AEAD_AES_256_GCM resource.
func openGCM(key, nonce, associatedData, ciphertext string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher([]byte(key))
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, []byte(nonce), ct, []byte(associatedData))
}

// v3Notice is a notification received.
type v3Notice struct {
	header http.Header
	body   []byte
}

// v3NotifyServer records APIv3 notifications; answer (nil: 204) answers
// the n-th (from 1).
type v3NotifyServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []v3Notice
	answer func(n int, w http.ResponseWriter)
}

func newV3NotifyServer(t *testing.T, answer func(n int, w http.ResponseWriter)) *v3NotifyServer {
	t.Helper()
	ns := &v3NotifyServer{answer: answer}
	ns.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		ns.mu.Lock()
		ns.got = append(ns.got, v3Notice{header: r.Header.Clone(), body: body})
		n := len(ns.got)
		ns.mu.Unlock()
		if ns.answer == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		ns.answer(n, w)
	}))
	t.Cleanup(ns.srv.Close)
	return ns
}

func (ns *v3NotifyServer) URL() string { return ns.srv.URL + "/wxpay/v3/notify" }

func (ns *v3NotifyServer) received() []v3Notice {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]v3Notice(nil), ns.got...)
}

func (ns *v3NotifyServer) count() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return len(ns.got)
}

// decodeNotice decodes a notification and decrypts its resource with the
// test APIv3 key.
func decodeNotice(t *testing.T, body []byte) (env map[string]any, resource map[string]any, err error) {
	t.Helper()
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("notification is not JSON: %v: %s", err, body)
	}
	res, _ := env["resource"].(map[string]any)
	if res == nil {
		t.Fatalf("notification without resource: %s", body)
	}
	plain, err := openGCM(testAPIv3Key, fmt.Sprint(res["nonce"]), fmt.Sprint(res["associated_data"]), fmt.Sprint(res["ciphertext"]))
	if err != nil {
		return env, nil, err
	}
	if err := json.Unmarshal(plain, &resource); err != nil {
		t.Fatalf("resource is not JSON: %v: %s", err, plain)
	}
	return env, resource, nil
}

// jsapiBody is a valid JSAPI prepay body of 888 fen.
func jsapiBody(outTradeNo, notifyURL string) map[string]any {
	return map[string]any{
		"appid": appA, "mchid": testMchID, "description": "腾讯充值中心-QQ会员充值", "out_trade_no": outTradeNo,
		"attach": "支付测试", "notify_url": notifyURL, "amount": map[string]any{"total": 888, "currency": "CNY"},
		"payer": map[string]any{"openid": testOpenID},
	}
}

// prepay places a JSAPI order of 888 fen with APIv3 and returns its
// prepay_id.
func (c *v3Client) prepay(outTradeNo, notifyURL string) string {
	c.t.Helper()
	r := c.post("/v3/pay/transactions/jsapi", jsapiBody(outTradeNo, notifyURL))
	r.wantStatus(c.t, http.StatusOK)
	id, _ := r.object(c.t)["prepay_id"].(string)
	if id == "" {
		c.t.Fatalf("no prepay_id: %s", r.body)
	}
	return id
}
