package wxpaysim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/caddy-wxpay/caddy-wxpay/wxpay"
)

// MsgCertInvalid answers a /secapi/ call without a client certificate, with
// one that does not chain to Config.ClientCAs for client authentication, or
// with one whose CommonName is not the request's mch_id. Like the other
// refusals it carries return_code FAIL and is not signed.
const MsgCertInvalid = "证书验证失败"

// WeChat's answers to refunds of more than an order allows, as merchants
// report them: a refund_fee above the request's own total_fee is refused
// outright (return_code FAIL); one above what is left of the order is
// err_code INVALID_REQUEST; any refund of an order refunded in full is
// err_code ERROR.
const (
	MsgInvalidRefundFee = "invalid refund_fee"
	DesRefundFeeTooHigh = "refund_fee大于可退金额"
	DesFullyRefunded    = "订单已全额退款"
)

// apiCall is one API request that passed WeChat's common checks: a POST
// with a flat UTF-8 XML body, a known merchant, a valid signature.
type apiCall struct {
	api string
	m   Merchant
	st  wxpay.SignType
	req wxpay.Params
}

// apiReply is the answer to an API call.
type apiReply struct {
	contentType string
	body        []byte
}

const contentTypeXML = "text/xml; charset=utf-8"

// serveAPI answers one API call: WeChat's common checks, then handle.
func (s *Simulator) serveAPI(w http.ResponseWriter, r *http.Request, api string, handle func(*apiCall) (apiReply, error)) {
	delay, delayed := s.takeDelay(api)
	reply, err := s.processAPI(r, api, handle)
	if err != nil {
		s.logf("wxpaysim: %s: %v", api, err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if delayed && !s.wait(r.Context(), delay) {
		s.logf("wxpaysim: %s: caller gave up during a delay of %v", api, delay)
		// Send nothing at all: returning would make net/http write an
		// empty 200, which can race the caller's own timeout and reach
		// it as an answer. Aborting closes the connection instead, as
		// Caddy's "abort" does.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", reply.contentType)
	_, _ = w.Write(reply.body)
}

// processAPI runs WeChat's checks common to every API, in WeChat's order,
// then the queued fault if any, then handle.
func (s *Simulator) processAPI(r *http.Request, api string, handle func(*apiCall) (apiReply, error)) (apiReply, error) {
	if r.Method != http.MethodPost {
		return s.refuse(api, MsgNotPost)
	}
	secure := api == APIRefund
	var certCN string
	if secure {
		cn, problem := s.clientCertCN(r)
		if problem != "" {
			s.logf("wxpaysim: %s: client certificate refused: %s", api, problem)
			return s.refuse(api, MsgCertInvalid)
		}
		certCN = cn
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestSize+1))
	if err != nil {
		return apiReply{}, fmt.Errorf("reading the request: %w", err)
	}
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return s.refuse(api, MsgEmptyBody)
	case len(body) > MaxRequestSize:
		return s.refuse(api, MsgBadXML)
	case !utf8.Valid(body):
		return s.refuse(api, MsgNotUTF8)
	}
	req, err := wxpay.DecodeXML(body)
	if err != nil {
		if errors.Is(err, wxpay.ErrNotUTF8) {
			return s.refuse(api, MsgNotUTF8)
		}
		return s.refuse(api, MsgBadXML)
	}
	mchID := req.Get("mch_id")
	if mchID == "" {
		return s.refuse(api, MsgMissingMchID)
	}
	if secure && certCN != mchID {
		s.logf("wxpaysim: %s: client certificate of %q used for mch_id %s", api, certCN, mchID)
		return s.refuse(api, MsgCertInvalid)
	}
	m, ok := s.merchant(mchID)
	if !ok {
		return s.refuse(api, MsgUnknownMchID)
	}
	st, err := wxpay.DocumentSignType(req)
	if err != nil {
		return s.refuse(api, MsgBadSignType)
	}
	if err := wxpay.Verify(req, m.Key, st); err != nil {
		return s.refuse(api, MsgInvalidSign)
	}
	c := &apiCall{api: api, m: m, st: st, req: req}
	if code, ok := s.takeFail(api); ok {
		if api == APIDownloadBill {
			// The bill API answers its failures unsigned, the code as
			// return_msg.
			return s.billFail(code, "")
		}
		return s.fail(c, code, errCodeDes(code))
	}
	return handle(c)
}

// refuse builds an unsigned return_code FAIL answer.
func (s *Simulator) refuse(api, msg string) (apiReply, error) {
	s.logf("wxpaysim: %s refused: %s", api, msg)
	return encodeReply(wxpay.Params{{Name: "return_code", Value: "FAIL"}, {Name: "return_msg", Value: msg}})
}

// encodeReply encodes an XML answer.
func encodeReply(p wxpay.Params) (apiReply, error) {
	b, err := wxpay.EncodeXML(p)
	if err != nil {
		return apiReply{}, fmt.Errorf("encoding the answer: %w", err)
	}
	return apiReply{contentType: contentTypeXML, body: b}, nil
}

// fail answers result_code FAIL with an err_code, signed.
func (s *Simulator) fail(c *apiCall, code, des string) (apiReply, error) {
	ref := ""
	for _, f := range []string{"out_trade_no", "transaction_id", "out_refund_no", "refund_id", "bill_date"} {
		if v := c.req.Get(f); v != "" {
			ref += fmt.Sprintf(" %s=%q", f, v)
		}
	}
	s.logf("wxpaysim: %s mch_id=%s%s: %s %s", c.api, c.m.MchID, ref, code, des)
	return s.answer(c.m, c.st, c.req, code, des, nil)
}

// succeed answers result_code SUCCESS with fields, signed.
func (s *Simulator) succeed(c *apiCall, fields wxpay.Params) (apiReply, error) {
	return s.answer(c.m, c.st, c.req, "", "", fields)
}

// answer builds a signed return_code SUCCESS answer: result_code SUCCESS
// with fields when errCode is empty, else result_code FAIL with errCode.
// It is signed with the request's sign type and does not name it.
func (s *Simulator) answer(m Merchant, st wxpay.SignType, req wxpay.Params, errCode, errDes string, fields wxpay.Params) (apiReply, error) {
	p := make(wxpay.Params, 0, 12+len(fields))
	p.Set("return_code", "SUCCESS")
	p.Set("return_msg", "OK")
	p.SetNonEmpty("appid", req.Get("appid"))
	p.Set("mch_id", m.MchID)
	p.SetNonEmpty("device_info", req.Get("device_info"))
	p.Set("nonce_str", randomString(alnum, 16))
	if errCode == "" {
		p.Set("result_code", "SUCCESS")
	} else {
		p.Set("result_code", "FAIL")
		p.Set("err_code", errCode)
		p.Set("err_code_des", errDes)
	}
	p = append(p, fields...)
	sign, err := wxpay.Sign(p, m.Key, st)
	if err != nil {
		return apiReply{}, fmt.Errorf("signing the answer: %w", err)
	}
	// WeChat puts sign right after nonce_str.
	at := slices.IndexFunc(p, func(f wxpay.Param) bool { return f.Name == "nonce_str" }) + 1
	p = slices.Insert(p, at, wxpay.Param{Name: "sign", Value: sign})
	return encodeReply(p)
}

// checkQuery runs the checks shared by orderquery, closeorder, refund,
// refundquery and downloadbill: appid bound to the merchant, the common
// required fields. It returns an err_code and its description, or "".
func checkQuery(c *apiCall) (code, des string) {
	appID := c.req.Get("appid")
	if appID != "" && !slices.Contains(c.m.AppIDs, appID) {
		return "APPID_MCHID_NOT_MATCH", errCodeDes("APPID_MCHID_NOT_MATCH")
	}
	for _, f := range []string{"appid", "nonce_str"} {
		if c.req.Get(f) == "" {
			return "LACK_PARAMS", "缺少参数" + f
		}
	}
	if len(c.req.Get("nonce_str")) > 32 {
		return "PARAM_ERROR", "nonce_str参数长度有误"
	}
	return "", ""
}
