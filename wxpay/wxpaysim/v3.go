package wxpaysim

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// API names of the APIv3 routes for FailNext and DelayNext.
const (
	APIV3Prepay       = "v3/prepay"       // POST /v3/pay/transactions/{jsapi,native,app,h5}
	APIV3Query        = "v3/query"        // GET /v3/pay/transactions/{out-trade-no,id}/…
	APIV3Close        = "v3/close"        // POST /v3/pay/transactions/out-trade-no/{no}/close
	APIV3Refund       = "v3/refund"       // POST /v3/refund/domestic/refunds
	APIV3RefundQuery  = "v3/refundquery"  // GET /v3/refund/domestic/refunds/{out_refund_no}
	APIV3TradeBill    = "v3/tradebill"    // GET /v3/bill/tradebill
	APIV3BillDownload = "v3/billdownload" // GET /v3/billdownload/file
	APIV3Certificates = "v3/certificates" // GET /v3/certificates
)

// MaxTimestampSkew is how far a request's Authorization timestamp may be
// from the simulator's clock, either way, as WeChat allows ("HTTP头
// Authorization中的timestamp与发起请求的时间不得超过5分钟", the 401 table of
// pay.weixin.qq.com/docs/partner/development/interface-rules/signature-faqs.html).
// Merchants must refuse notifications and answers further off too.
const MaxTimestampSkew = 5 * time.Minute

// WeChat's SIGN_ERROR messages (HTTP 401), from the table "为什么请求返回
// 401 Unauthorized?" of
// pay.weixin.qq.com/docs/partner/development/interface-rules/signature-faqs.html
// and the answers merchants quote on developers.weixin.qq.com (e.g.
// "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》").
// MsgV3UnknownMerchant is the simulator's own: WeChat documents no message
// for an unknown mchid.
const (
	MsgV3AuthFormat      = "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》"
	MsgV3AuthScheme      = "Http头Authorization认证类型不正确"
	MsgV3Timestamp       = "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟"
	MsgV3Serial          = "商户证书序列号有误。"
	MsgV3BadSignature    = "错误的签名，验签失败"
	MsgV3NoAPIv3         = "商户未设置APIv3密钥。"
	MsgV3UnknownMerchant = "商户号不存在，或商户未申请过证书。"
)

// MsgNoPlatformCertificates is the message of GET /v3/certificates for a
// merchant in public key mode: HTTP 404 RESOURCE_NOT_EXISTS (wechatpay-java
// issue #400; WxJava issues #3402 and #3728).
const MsgNoPlatformCertificates = "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥"

// v3Route is an APIv3 route matched by pattern.
type v3Route struct {
	api    string
	method string
	params []string // path parameters, unescaped
	handle func(*v3Call) v3Reply
}

// matchV3Route matches the path of an APIv3 route.
func (s *Simulator) matchV3Route(path string) (v3Route, bool) {
	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range seg {
		u, err := url.PathUnescape(p)
		if err != nil {
			return v3Route{}, false
		}
		seg[i] = u
	}
	is := func(want ...string) bool {
		if len(want) != len(seg) {
			return false
		}
		for i, w := range want {
			if w != "*" && w != seg[i] || w == "*" && seg[i] == "" {
				return false
			}
		}
		return true
	}
	switch {
	case is("v3", "pay", "transactions", "*") && v3TradeType(seg[3]) != "":
		return v3Route{api: APIV3Prepay, method: http.MethodPost, params: seg[3:], handle: s.v3Prepay}, true
	case is("v3", "pay", "transactions", "out-trade-no", "*"):
		return v3Route{api: APIV3Query, method: http.MethodGet, params: seg[3:], handle: s.v3Query}, true
	case is("v3", "pay", "transactions", "id", "*"):
		return v3Route{api: APIV3Query, method: http.MethodGet, params: seg[3:], handle: s.v3Query}, true
	case is("v3", "pay", "transactions", "out-trade-no", "*", "close"):
		return v3Route{api: APIV3Close, method: http.MethodPost, params: seg[4:5], handle: s.v3Close}, true
	case is("v3", "refund", "domestic", "refunds"):
		return v3Route{api: APIV3Refund, method: http.MethodPost, handle: s.v3Refund}, true
	case is("v3", "refund", "domestic", "refunds", "*"):
		return v3Route{api: APIV3RefundQuery, method: http.MethodGet, params: seg[4:], handle: s.v3RefundQuery}, true
	case is("v3", "bill", "tradebill"):
		return v3Route{api: APIV3TradeBill, method: http.MethodGet, handle: s.v3TradeBill}, true
	case is("v3", "billdownload", "file"):
		return v3Route{api: APIV3BillDownload, method: http.MethodGet, handle: s.v3BillDownload}, true
	case is("v3", "certificates"):
		return v3Route{api: APIV3Certificates, method: http.MethodGet, handle: s.v3Certificates}, true
	}
	return v3Route{}, false
}

// serveV3Routes serves the APIv3 routes and the /sim/v3/ controls, and
// reports false for any other path.
func (s *Simulator) serveV3Routes(w http.ResponseWriter, r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/sim/v3/") {
		return s.serveV3Control(w, r)
	}
	if !strings.HasPrefix(r.URL.Path, "/v3/") {
		return false
	}
	route, ok := s.matchV3Route(r.URL.EscapedPath())
	if !ok {
		return false
	}
	s.serveV3(w, r, route)
	return true
}

// v3Call is one APIv3 request that passed authentication.
type v3Call struct {
	s         *Simulator
	r         *http.Request
	route     v3Route
	mchID     string
	reqSerial string // the request's Wechatpay-Serial
	body      []byte
}

// v3Reply is the answer to an APIv3 request.
type v3Reply struct {
	status      int
	body        []byte // JSON; nil for 204
	contentType string // when not JSON (bill downloads)
	unsigned    bool   // the bill download: not signed
	certSigned  bool   // /v3/certificates: signed by a listed certificate
	mchID       string // whose key signs; "" leaves the answer unsigned
	reqSerial   string
}

// v3Error is WeChat's error body.
type v3Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// v3Fail builds an error answer, signed with the merchant's key when
// mchID has APIv3.
func (s *Simulator) v3Fail(mchID, reqSerial string, status int, code, message string, detail any) v3Reply {
	body, err := marshalV3(v3Error{Code: code, Message: message, Detail: detail})
	if err != nil { // a detail that does not encode: a bug
		body = []byte(`{"code":"SYSTEM_ERROR","message":"系统错误"}`)
		status = http.StatusInternalServerError
	}
	return v3Reply{status: status, body: body, mchID: mchID, reqSerial: reqSerial}
}

// fail builds an error answer to an authenticated call.
func (c *v3Call) fail(status int, code, message string, detail any) v3Reply {
	return c.s.v3Fail(c.mchID, c.reqSerial, status, code, message, detail)
}

// ok builds a 200 answer with v as JSON.
func (c *v3Call) ok(v any) v3Reply {
	body, err := marshalV3(v)
	if err != nil {
		c.s.logf("wxpaysim: %s: encoding the answer: %v", c.route.api, err)
		return c.fail(http.StatusInternalServerError, "SYSTEM_ERROR", "系统错误", nil)
	}
	return v3Reply{status: http.StatusOK, body: body, mchID: c.mchID, reqSerial: c.reqSerial}
}

// noContent builds a 204 answer, signed over the empty body.
func (c *v3Call) noContent() v3Reply {
	return v3Reply{status: http.StatusNoContent, mchID: c.mchID, reqSerial: c.reqSerial}
}

// marshalV3 encodes v as WeChat does: compact, without HTML escapes.
func marshalV3(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// serveV3 answers one APIv3 request: authentication, then the queued
// fault if any, then the route's handler; the answer signed.
func (s *Simulator) serveV3(w http.ResponseWriter, r *http.Request, route v3Route) {
	delay, delayed := s.takeDelay(route.api)
	reply := s.processV3(r, route)
	if delayed && !s.wait(r.Context(), delay) {
		s.logf("wxpaysim: %s: caller gave up during a delay of %v", route.api, delay)
		panic(http.ErrAbortHandler) // as serveAPI: no answer at all
	}
	s.writeV3(w, reply)
}

// processV3 authenticates r as WeChat does and runs its handler.
func (s *Simulator) processV3(r *http.Request, route v3Route) v3Reply {
	reqSerial := r.Header.Get("Wechatpay-Serial")
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestSize+1))
	if err != nil {
		s.logf("wxpaysim: %s: reading the request: %v", route.api, err)
		return s.v3Fail("", "", http.StatusBadRequest, "INVALID_REQUEST", "读取请求失败", nil)
	}
	auth, problem, scheme := parseV3Authorization(r.Header.Get("Authorization"))
	if problem != "" {
		s.logf("wxpaysim: %s refused: Authorization: %s", route.api, problem)
		msg := MsgV3AuthFormat
		if scheme {
			msg = MsgV3AuthScheme
		}
		// The mchid, when it could be read, chooses the key that signs
		// the refusal.
		return s.v3Fail(s.v3SignerOf(auth.mchID), reqSerial, http.StatusUnauthorized, "SIGN_ERROR", msg,
			map[string]any{"location": "authorization", "detail": map[string]string{"issue": problem}})
	}
	s.mu.Lock()
	_, known := s.merchants[auth.mchID]
	m := s.v3[auth.mchID]
	var mchSerial string
	var mchKey *rsa.PublicKey
	if m != nil {
		mchSerial, mchKey = m.mchSerial, m.mchKey
	}
	s.mu.Unlock()
	refuse := func(msg, why string, detail any) v3Reply {
		s.logf("wxpaysim: %s mchid=%s refused: %s", route.api, auth.mchID, why)
		signer := auth.mchID
		if m == nil {
			signer = ""
		}
		return s.v3Fail(signer, reqSerial, http.StatusUnauthorized, "SIGN_ERROR", msg, detail)
	}
	switch {
	case !known:
		return refuse(MsgV3UnknownMerchant, "unknown mchid", nil)
	case m == nil:
		return refuse(MsgV3NoAPIv3, "the merchant has no APIv3", nil)
	case len(body) > MaxRequestSize:
		// Its signature cannot be checked: only MaxRequestSize bytes
		// were read.
		s.logf("wxpaysim: %s mchid=%s refused: a body over %d bytes", route.api, auth.mchID, MaxRequestSize)
		return s.v3Fail(auth.mchID, reqSerial, http.StatusBadRequest, "INVALID_REQUEST", fmt.Sprintf("请求体超过%d字节", MaxRequestSize), nil)
	case auth.serial != mchSerial:
		return refuse(MsgV3Serial, fmt.Sprintf("serial_no %s is not the merchant certificate's %s", auth.serial, mchSerial), nil)
	}
	ts, _ := strconv.ParseInt(auth.timestamp, 10, 64) // digits, checked
	if skew := s.now().Sub(time.Unix(ts, 0)); skew > MaxTimestampSkew || skew < -MaxTimestampSkew {
		return refuse(MsgV3Timestamp, fmt.Sprintf("timestamp %s is %v from the simulator's clock", auth.timestamp, skew.Round(time.Second)), nil)
	}
	target := requestTarget(r)
	message := r.Method + "\n" + target + "\n" + auth.timestamp + "\n" + auth.nonce + "\n" + string(body) + "\n"
	if !verifyV3(mchKey, message, auth.signature) {
		return refuse(MsgV3BadSignature, "the signature does not verify with the merchant certificate", map[string]any{
			"detail":   map[string]string{"issue": "sign not match"},
			"field":    "signature",
			"location": "authorization",
			"sign_information": map[string]any{
				"method":                 r.Method,
				"sign_message_length":    len(message),
				"truncated_sign_message": truncate([]byte(message), 128),
				"url":                    target,
			},
		})
	}
	c := &v3Call{s: s, r: r, route: route, mchID: auth.mchID, reqSerial: reqSerial, body: body}
	if r.Method != route.method {
		s.logf("wxpaysim: %s mchid=%s refused: method %s", route.api, c.mchID, r.Method)
		return c.fail(http.StatusMethodNotAllowed, "INVALID_REQUEST", "请求方法须为"+route.method, nil)
	}
	if r.Method == http.MethodPost {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "Content-Type须为application/json", nil)
		}
	}
	if code, ok := s.takeFail(route.api); ok {
		if code == "SYSTEMERROR" {
			code = "SYSTEM_ERROR"
		}
		s.logf("wxpaysim: %s mchid=%s: queued fault %s", route.api, c.mchID, code)
		return c.fail(v3Status(code), code, v3ErrorMessage(code), nil)
	}
	return route.handle(c)
}

// v3SignerOf returns mchID when that merchant has APIv3 (its key may sign
// a refusal), else "".
func (s *Simulator) v3SignerOf(mchID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.v3[mchID]; ok {
		return mchID
	}
	return ""
}

// requestTarget is the path and query as the client sent them, which its
// signature covers.
func requestTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// verifyV3 verifies a base64 RSA PKCS#1 v1.5 SHA-256 signature of message.
func verifyV3(key *rsa.PublicKey, message, signature string) bool {
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) == 0 {
		return false
	}
	sum := sha256.Sum256([]byte(message))
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) == nil
}

// v3Auth is a parsed Authorization header.
type v3Auth struct {
	mchID, nonce, timestamp, serial, signature string
}

// parseV3Authorization parses `WECHATPAY2-SHA256-RSA2048 mchid="…",
// nonce_str="…",timestamp="…",serial_no="…",signature="…"` strictly: the
// five fields once each, in any order, quoted, without others. It returns
// what is wrong (scheme true when the scheme itself is) and the mchid
// when it could be read.
func parseV3Authorization(h string) (a v3Auth, problem string, scheme bool) {
	if h == "" {
		return a, "no Authorization header", false
	}
	sch, params, found := strings.Cut(h, " ")
	if sch != SignatureTypeV3 {
		return a, fmt.Sprintf("scheme %q is not %s", sch, SignatureTypeV3), true
	}
	if !found || params == "" {
		return a, "no parameters after the scheme", false
	}
	fields := map[string]*string{
		"mchid": &a.mchID, "nonce_str": &a.nonce, "timestamp": &a.timestamp, "serial_no": &a.serial, "signature": &a.signature,
	}
	seen := map[string]bool{}
	for params != "" {
		name, rest, ok := strings.Cut(params, "=")
		if !ok || !strings.HasPrefix(rest, `"`) {
			return a, fmt.Sprintf("parameter %q is not name=\"value\"", truncate([]byte(params), 40)), false
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return a, fmt.Sprintf("the value of %q is not closed", name), false
		}
		value := rest[1 : 1+end]
		params = rest[2+end:]
		if params != "" {
			if params[0] != ',' {
				return a, fmt.Sprintf("%q is not followed by a comma", name), false
			}
			params = params[1:]
			if params == "" {
				return a, "a trailing comma", false
			}
		}
		dst, known := fields[name]
		switch {
		case !known:
			return a, fmt.Sprintf("unknown parameter %q", name), false
		case seen[name]:
			return a, fmt.Sprintf("parameter %q twice", name), false
		}
		seen[name] = true
		*dst = value
	}
	for _, name := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
		if *fields[name] == "" {
			return a, fmt.Sprintf("no %s", name), false
		}
	}
	if _, err := strconv.ParseUint(a.timestamp, 10, 63); err != nil || strings.TrimLeft(a.timestamp, "0123456789") != "" {
		return a, fmt.Sprintf("timestamp %q is not seconds", a.timestamp), false
	}
	return a, "", false
}

// writeV3 writes an answer with WeChat's headers: Request-ID always, and
// Wechatpay-Timestamp, -Nonce, -Signature, -Serial and -Signature-Type
// when the merchant is known to have APIv3 (the bill download excepted).
func (s *Simulator) writeV3(w http.ResponseWriter, reply v3Reply) {
	h := w.Header()
	h.Set("Request-ID", randomString("0123456789ABCDEF", 40)+"-"+randomString(digits, 9))
	if !reply.unsigned && reply.mchID != "" {
		now := s.now()
		s.mu.Lock()
		var key signingKey
		m, ok := s.v3[reply.mchID]
		if ok {
			if reply.certSigned && len(m.certs) > 0 {
				key = m.certificateListSigner(reply.reqSerial, now)
			} else {
				key = m.answerSigner(reply.reqSerial, now)
			}
		}
		s.mu.Unlock()
		if ok {
			ts, nonce := strconv.FormatInt(now.Unix(), 10), randomString(alnum, 32)
			sig, err := signV3(key.key, ts, nonce, reply.body)
			if err != nil {
				s.logf("wxpaysim: signing an answer of mchid %s: %v", reply.mchID, err)
			} else {
				h.Set("Wechatpay-Timestamp", ts)
				h.Set("Wechatpay-Nonce", nonce)
				h.Set("Wechatpay-Signature", sig)
				h.Set("Wechatpay-Serial", key.serial)
				h.Set("Wechatpay-Signature-Type", SignatureTypeV3)
			}
		}
	}
	if reply.status != http.StatusNoContent {
		ct := reply.contentType
		if ct == "" {
			ct = "application/json; charset=utf-8"
		}
		h.Set("Content-Type", ct)
	}
	w.WriteHeader(reply.status)
	if reply.status != http.StatusNoContent {
		_, _ = w.Write(reply.body)
	}
}

// v3Status is the HTTP status WeChat answers with an APIv3 error code,
// after the error tables of its APIv3 pages (JSAPI下单 4012791897, 查询订单
// 4012791899/4012791900, 申请退款 4012791903, 查询单笔退款 4012791904 under
// pay.weixin.qq.com/doc/v3/merchant/) and its common status table
// (pay.weixin.qq.com/doc/global/v3/zh/4012354972).
func v3Status(code string) int {
	switch code {
	case "SIGN_ERROR":
		return http.StatusUnauthorized
	case "NO_AUTH", "NOAUTH", "OUT_TRADE_NO_USED", "RULE_LIMIT", "RULELIMIT", "TRADE_ERROR", "NOT_ENOUGH", "NOTENOUGH",
		"ACCOUNT_ERROR", "ACCOUNTERROR", "USER_ACCOUNT_ABNORMAL", "REQUEST_BLOCKED":
		return http.StatusForbidden
	case "ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS":
		return http.StatusNotFound
	case "FREQUENCY_LIMITED", "RATELIMIT_EXCEEDED", "RATE_LIMITED":
		return http.StatusTooManyRequests
	case "SYSTEM_ERROR", "SYSTEMERROR", "BANK_ERROR", "BANKERROR", "OPENID_MISMATCH", "INVALID_TRANSACTIONID":
		return http.StatusInternalServerError
	case "USERPAYING", "USER_PAYING":
		// 关闭订单's "202 USER_PAYING 用户支付中，需要输入密码".
		return http.StatusAccepted
	}
	return http.StatusBadRequest
}

// v3ErrorMessage is the description of an APIv3 error code, for faults.
func v3ErrorMessage(code string) string {
	switch code {
	case "SYSTEM_ERROR":
		return "系统错误"
	case "FREQUENCY_LIMITED":
		return "频率超限"
	case "NOT_ENOUGH":
		return "余额不足"
	case "NO_AUTH":
		return "商户无权限"
	case "USER_ACCOUNT_ABNORMAL":
		return "退款请求失败"
	case "RULE_LIMIT":
		return "业务规则限制"
	case "TRADE_ERROR":
		return "交易错误"
	case "USER_PAYING":
		return "用户支付中，需要输入密码"
	}
	return errCodeDes(code)
}

// v3ParamError answers 400 PARAM_ERROR for a missing or malformed field,
// in WeChat's words (IJPay issue #79 quotes one: `{"code":"PARAM_ERROR",
// "detail":{"location":"uri_template","value":""},"message":"输入源“/
// uri_template/mchid”映射到字段“直连商户号”必填性规则校验失败，此字段为必填项"}`).
func (c *v3Call) paramError(location, field, label, phrase string, value any) v3Reply {
	path := "/" + location + "/" + strings.ReplaceAll(field, ".", "/")
	c.s.logf("wxpaysim: %s mchid=%s: PARAM_ERROR %s: %s", c.route.api, c.mchID, field, phrase)
	return c.fail(http.StatusBadRequest, "PARAM_ERROR",
		fmt.Sprintf("输入源“%s”映射到字段“%s”%s", path, label, phrase),
		map[string]any{"location": location, "field": field, "value": value})
}

// missing answers PARAM_ERROR for a required field left out.
func (c *v3Call) missing(location, field, label string) v3Reply {
	return c.paramError(location, field, label, "必填性规则校验失败，此字段为必填项", "")
}

// invalid answers PARAM_ERROR for a field that breaks a rule, phrase
// saying which ("长度规则校验失败，最大长度为127").
func (c *v3Call) invalid(location, field, label, phrase string, value any) v3Reply {
	return c.paramError(location, field, label, phrase, value)
}

// decodeBody decodes the JSON body into v. Unknown fields are accepted, as
// WeChat does: IJPay issue #79 shows a close request whose body had
// mch_id instead of mchid refused for the missing mchid, not for the
// unknown mch_id. A body that is not one JSON object is INVALID_REQUEST;
// a field of the wrong type is PARAM_ERROR naming it.
func (c *v3Call) decodeBody(v any) (v3Reply, bool) {
	if !utf8.Valid(c.body) {
		return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "请求体不是UTF-8编码", nil), false
	}
	dec := json.NewDecoder(bytes.NewReader(c.body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return c.invalid("body", te.Field, te.Field, "类型规则校验失败，值的类型须为"+te.Type.String(), te.Value), false
		}
		return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "请求体不是合法的JSON对象", map[string]string{"issue": err.Error()}), false
	}
	if _, err := dec.Token(); err != io.EOF {
		return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "请求体不是合法的JSON对象", map[string]string{"issue": "more than one JSON value"}), false
	}
	return v3Reply{}, true
}

// queryMchID checks the mchid query parameter of a GET: present and the
// Authorization's.
func (c *v3Call) queryMchID() (v3Reply, bool) {
	q := c.r.URL.Query()
	switch mchID := q.Get("mchid"); {
	case mchID == "":
		return c.missing("query", "mchid", "直连商户号"), false
	case mchID != c.mchID:
		return c.mchIDMismatch(mchID), false
	}
	return v3Reply{}, true
}

// mchIDMismatch answers a request whose mchid is not the Authorization's.
// WeChat documents no code for it; INVALID_REQUEST is its code for a
// request "符合参数格式，但不符合业务规则".
func (c *v3Call) mchIDMismatch(mchID string) v3Reply {
	c.s.logf("wxpaysim: %s: mchid %q in the request, %s in the Authorization", c.route.api, mchID, c.mchID)
	return c.fail(http.StatusBadRequest, "INVALID_REQUEST", "请求中的商户号与Authorization中的商户号不一致", map[string]string{"location": "body", "field": "mchid"})
}
